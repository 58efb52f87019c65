// Command farmgate runs every piece of a farmgate farm: a gateway, an exit
// node, or the whole demo farm in one process. It only wires: flags and
// config in, objects built, started, stopped on a signal.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `farmgate: the gateway in front of a forward-proxy farm

usage:
  farmgate demo      [--listen ADDR] [--admin ADDR] [--origin ADDR] [--exits N] [--insecure-links]
  farmgate gateway   --token-file F  (--customers FILE | --redis-url URL | --redis ADDR,...)
                     (--exit ID=HOST:PORT ... | --join HOST:PORT,... --gossip-key-file F)
                     [--listen ADDR] [--admin ADDR] [--dc DC] [flags]
                     (--tls-cert F --tls-key F --tls-ca F | --insecure-links)
  farmgate exit      --id ID --token-file F [--listen ADDR] [--dc DC] [--country CC] [--egress IP,...]
                     [--allow-dest CIDR,...] [--join HOST:PORT,... --gossip-key-file F --pool P] [flags]
                     (--tls-cert F --tls-key F --tls-ca F | --insecure-links)
  farmgate customers add|set|disable|enable|delete|list|show|usage [USER]
                     (--redis-url URL | --redis ADDR,... | --file FILE) [flags]
  farmgate status    [--admin URL] [--token T | --admin-token-file F]
                     the farm at a glance from a gateway's admin API: exits per DC
                     and state, gateways, customers online, errors in the last minute
  farmgate certs init  --dir D [--force]
                     mint the farm CA of the links
  farmgate certs issue --dir D --role exit|gateway --id ID [--out PREFIX]
                     a node's certificate and key, signed by the farm CA
  farmgate config-example gateway|exit|customers
                     print a documented YAML file with every setting and its default
  farmgate gossip-key
                     print a new gossip encryption key (base64 of 32 random bytes)
  farmgate version
  farmgate help

A gateway needs customers (a file, or Redis shared by every gateway) and
exits (listed with --exit, or found over gossip with --join). Every command
but customers and certs also reads its flags from a YAML file given with --config (keys are the
flag names) and from FARMGATE_* variables (--redis-url is
FARMGATE_REDIS_URL); the command line wins over the environment, which
wins over the file. Run 'farmgate COMMAND --help' for a command's flags.
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
	redis.SetLogger(newRedisLog(logger))
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
	case "status":
		err = runStatus(ctx, args[1:], stdout)
	case "certs":
		err = runCerts(args[1:], stdout)
	case "config-example":
		if len(args) != 2 {
			err = usageError{fmt.Errorf("usage: farmgate config-example gateway|exit|customers")}
		} else {
			err = exampleConfig(stdout, args[1])
		}
	case "gossip-key":
		if len(args) != 1 {
			err = usageError{fmt.Errorf("usage: farmgate gossip-key (it takes no argument)")}
		} else {
			err = printGossipKey(stdout)
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

// printGossipKey writes a new gossip encryption key: 32 random bytes
// (AES-256), base64, one line, as --gossip-key-file reads it.
func printGossipKey(w io.Writer) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("reading random bytes: %w", err)
	}
	_, err := fmt.Fprintln(w, base64.StdEncoding.EncodeToString(key))
	return err
}
