// Command farmgate runs every piece of a farmgate farm: a gateway, an exit
// node, or the whole demo farm in one process. It only wires: flags and
// config in, objects built, started, stopped on a signal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `farmgate: the gateway in front of a forward-proxy farm

usage:
  farmgate demo     [--listen ADDR] [--admin ADDR] [--origin ADDR] [--exits N]
  farmgate gateway  --listen ADDR --admin ADDR --dc DC --customers FILE --token-file F --exit ID=URL ...
  farmgate exit     --listen ADDR --id ID --dc DC --pool P --country CC --egress IP,IP --token-file F [--allow-dest CIDR,...]
                    (--tls-cert F --tls-key F --tls-ca F | --insecure-links)
  farmgate customers add|set|disable|enable|delete|list|show|usage USER [flags]   (--redis-url URL | --file FILE)
  farmgate certs init  --dir D [--force]                                    the farm CA of the links
  farmgate certs issue --dir D --role exit|gateway --id ID [--out PREFIX]   a node's certificate
  farmgate config-example gateway|exit    print a documented YAML config with every default
  farmgate version

Every command but customers and certs also reads its flags from a YAML file
given with --config (keys are the flag names); flags on the command line win.
Run 'farmgate COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "demo":
		err = runDemo(ctx, args[1:], stdout, logger)
	case "gateway":
		err = runGateway(ctx, args[1:], logger)
	case "exit":
		err = runExit(ctx, args[1:], logger)
	case "customers":
		err = runCustomers(ctx, args[1:], stdout, stderr)
	case "certs":
		err = runCerts(args[1:], stdout)
	case "config-example":
		if len(args) != 2 {
			err = usageError{fmt.Errorf("usage: farmgate config-example gateway|exit")}
		} else {
			err = exampleConfig(stdout, args[1])
		}
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "farmgate", version)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "farmgate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "farmgate %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "farmgate %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a bad flag or config value: exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// drainTimeout is how long a stopping process lets live tunnels finish.
const drainTimeout = 30 * time.Second
