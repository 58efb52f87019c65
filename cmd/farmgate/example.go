package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// exampleConfig writes a YAML config file for a command: every setting with
// its documentation and default. deploy/config/*.yaml are this output, kept
// in sync by a test.
func exampleConfig(w io.Writer, command string) error {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	var tail string
	switch command {
	case "gateway":
		gatewayFlags(fs)
		tail = gatewayExtraDoc
	case "exit":
		exitFlags(fs)
	default:
		return usageError{fmt.Errorf("config-example: want gateway or exit, got %q", command)}
	}
	fmt.Fprintf(w, "# farmgate %s configuration: farmgate %s --config THIS_FILE\n", command, command)
	fmt.Fprintf(w, "# Every key is a flag name; a flag on the command line or a %s* variable\n", EnvPrefix)
	fmt.Fprintf(w, "# (e.g. %s) overrides the file. Lists may be YAML lists.\n", envName("listen"))
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "\n# %s.\n", f.Usage)
		fmt.Fprintf(w, "# Default: %s\n", defaultText(f))
		if f.DefValue == "" || f.DefValue == "[]" {
			fmt.Fprintf(w, "#%s:\n", f.Name)
			return
		}
		fmt.Fprintf(w, "%s: %s\n", f.Name, f.DefValue)
	})
	io.WriteString(w, tail)
	return nil
}

func defaultText(f *flag.Flag) string {
	if f.DefValue == "" || f.DefValue == "[]" {
		if strings.Contains(f.Usage, "required") {
			return "none (required)"
		}
		return "empty"
	}
	return f.DefValue
}

const gatewayExtraDoc = `
# Third-party upstreams used as exits (file only; reloaded on SIGHUP).
# url: http://user:pass@host:port (HTTP CONNECT) or socks5://user:pass@host:port.
#exits:
#  - id: vendor-1
#    url: socks5://user:pass@203.0.113.7:1080
#    pool: resi
#    country: US
#    dc: us
#    weight: 1

# Selection policy per pool, overriding --policy (file only; reloaded on SIGHUP).
#policies:
#  resi: least_latency
#  dc: round_robin
`
