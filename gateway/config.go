package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the gateway's settings. The zero value of a field means its
// default; DefaultConfig spells them out.
type Config struct {
	// DC is the datacenter this gateway runs in; exits there are preferred.
	DC string
	// ExitToken authenticates this gateway to farmgate exits. Required when
	// any exit uses the farmgate:// scheme.
	ExitToken string
	// ExitTLS returns the mutual-TLS configuration to dial the farmgate
	// exit of the given id with (farmtls.Holder.ClientConfig), which
	// accepts only a certificate of the farm naming that id. Default nil:
	// plaintext links, for one trusted network (--insecure-links).
	ExitTLS func(exitID string) *tls.Config
	// ReadHeaderTimeout bounds how long a customer may take to send a
	// request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ExitDialTimeout bounds the TCP connect to an exit. Default 5s.
	ExitDialTimeout time.Duration
	// ExitReplyTimeout bounds the wait for an exit's answer to CONNECT or to
	// a forwarded request's headers, which includes the exit's own dial of
	// the destination. Default 15s.
	ExitReplyTimeout time.Duration
	// IdleTimeout closes a tunnel, a forwarded request or a kept-alive
	// customer connection that moved no byte in either direction for this
	// long. Default 5m.
	IdleTimeout time.Duration
	// FinTimeout closes a tunnel this long after one side finished sending
	// when the other side stays silent. Default 30s.
	FinTimeout time.Duration
	// MaxAttempts is how many exits a request may try before the customer
	// gets an error; only failures before the first byte reached the
	// customer are retried. Default 3.
	MaxAttempts int
	// MaxIdleExitConns is how many idle keep-alive connections to each exit
	// are kept for absolute-form HTTP, how many idle links (tunnels one
	// after another on one connection) to each farmgate exit, and how many
	// idle tunnels through each farmgate exit to origins (at most 128),
	// kept for the next http:// request from the same egress IP. Default
	// 256.
	MaxIdleExitConns int
	// CheckInterval is how often live tunnels are metered and checked for
	// idleness and quota; a tunnel over quota is cut within this. Default 1s.
	CheckInterval time.Duration

	// Meter counts traffic and enforces quotas. Default nil: no metering.
	Meter Meter
	// Limiter enforces customers' concurrent tunnels and request rates.
	// Default nil: no limits.
	Limiter Limiter
	// Now is the clock of the gateway's decisions about accounts over
	// time (when an admitted customer's account expires); socket
	// deadlines, timers and the idle connections to exits keep the
	// system's. Default nil: time.Now.
	Now func() time.Time
	// CustomerTLS, when set, makes the customer port an HTTPS proxy too:
	// a connection whose first byte starts a TLS handshake (0x16) is
	// served, once decrypted, like any other (CONNECT, absolute-form
	// HTTP, SOCKS5). Its GetCertificate may change the certificate while
	// the gateway runs. Default nil: no TLS on the customer port.
	CustomerTLS *tls.Config
	// AccessLog gets one line per tunnel or request when it ends (or is
	// refused). Default nil: no access log.
	AccessLog *slog.Logger
	// Metrics is where the gateway's Prometheus series are registered.
	// Default nil: counted but not exported.
	Metrics prometheus.Registerer
	// MetricsCustomers is how many customers, the top ones by traffic
	// through this gateway, get their own farmgate_customer_* series; the
	// others are summed into customer="other". Default 0: no per-customer
	// series at all.
	MetricsCustomers int
}

// maxMetricsCustomers bounds MetricsCustomers: each customer costs a few
// series per reason, and Prometheus a few kilobytes per series.
const maxMetricsCustomers = 1000

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		ReadHeaderTimeout: 10 * time.Second,
		ExitDialTimeout:   5 * time.Second,
		ExitReplyTimeout:  15 * time.Second,
		IdleTimeout:       5 * time.Minute,
		FinTimeout:        30 * time.Second,
		MaxAttempts:       3,
		MaxIdleExitConns:  256,
		CheckInterval:     time.Second,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if c.ExitDialTimeout == 0 {
		c.ExitDialTimeout = d.ExitDialTimeout
	}
	if c.ExitReplyTimeout == 0 {
		c.ExitReplyTimeout = d.ExitReplyTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.FinTimeout == 0 {
		c.FinTimeout = d.FinTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = d.CheckInterval
	}
	if c.MaxIdleExitConns == 0 {
		c.MaxIdleExitConns = d.MaxIdleExitConns
	}
	return c
}

// Validate reports the first field that is wrong.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"exit_dial_timeout", c.ExitDialTimeout},
		{"exit_reply_timeout", c.ExitReplyTimeout},
		{"idle_timeout", c.IdleTimeout},
		{"fin_timeout", c.FinTimeout},
		{"check_interval", c.CheckInterval},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("gateway config: %s: must not be negative, got %s", f.name, f.d))
		}
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 10 {
		errs = append(errs, fmt.Errorf("gateway config: max_attempts: want 1..10, got %d", c.MaxAttempts))
	}
	if c.MaxIdleExitConns < 0 {
		errs = append(errs, fmt.Errorf("gateway config: max_idle_exit_conns: must not be negative, got %d", c.MaxIdleExitConns))
	}
	if c.MetricsCustomers < 0 || c.MetricsCustomers > maxMetricsCustomers {
		errs = append(errs, fmt.Errorf("gateway config: metrics_customers: want 0..%d, got %d", maxMetricsCustomers, c.MetricsCustomers))
	}
	return errors.Join(errs...)
}
