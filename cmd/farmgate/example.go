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
	case "customers":
		_, err := io.WriteString(w, customersExample)
		return err
	case "gateway":
		gatewayFlags(fs)
		tail = gatewayExtraDoc
	case "exit":
		exitFlags(fs)
	default:
		return usageError{fmt.Errorf("config-example: want gateway, exit or customers, got %q", command)}
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
# url: http://user:pass@host:port (HTTP CONNECT), https://user:pass@host:port
# (HTTP CONNECT over TLS, verified against the system's CAs; SSL_CERT_FILE
# names another bundle) or socks5://user:pass@host:port.
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

// customersExample is the customer file (--customers), every field
// documented; auth.CustomerRecord defines them and a test keeps the two
// in step. Its hash is of a random password nobody knows: a copy of this
// file lets nobody in until its hashes are replaced.
const customersExample = `# farmgate customers file: farmgate gateway --customers THIS_FILE
# One entry per customer. Required: user, password_hash (or password) and
# pools; everything else is optional and shown with an example value.
# The gateway re-reads the file on SIGHUP: a customer removed or disabled
# loses their live tunnels too. With --redis-url, customers live in Redis
# instead: manage them with 'farmgate customers add|set|...', same fields.
# 'farmgate customers add USER --file THIS_FILE --password-stdin --pools ...'
# adds an entry here with a fresh hash (the file is rewritten, comments
# dropped).
customers:
  # Login name: 1-64 of A-Z a-z 0-9 _ . @. No "-": in the proxy username
  # (alice-country-us-session-s1) targeting starts at the first "-".
  - user: alice
    # argon2id (PHC string) or bcrypt hash of the password. Replace this one.
    password_hash: "$argon2id$v=19$m=19456,t=2,p=1$DxOhLLLaPg35gnpE4EdMuw$PD578YgRA1zVGCHufPfgBjNxLShKAGEQdqN5jtMmq6o"
    # Or a plaintext password, for demos only (the gateway warns); not both.
    #password: s3cret
    # Pools (the username's zone) the customer may use; at least one.
    pools: [resi, dc]
    # Pool used when the username names no zone. Default: the first of pools.
    default_pool: resi
    # true: the customer cannot log in (and loses live tunnels). Default false.
    disabled: false
    # Client addresses or CIDRs the customer may connect from. Default: anywhere.
    allow_ips: [203.0.113.0/24, 2001:db8::/32]
    # Concurrent tunnels and requests at most. Default 0: no cap.
    max_conns: 100
    # Requests per second. Default 0: unlimited.
    rate_per_sec: 50
    # Requests at once on top of the rate. Default 0: max(1, rate_per_sec).
    rate_burst: 100
    # Bytes up and down per calendar month (UTC), in bytes: 100 GB here.
    # Default 0: no quota.
    quota_bytes: 100000000000
    # When the account stops working: an RFC 3339 time or a date (midnight
    # UTC). Default: never.
    expires: 2027-01-31
`
