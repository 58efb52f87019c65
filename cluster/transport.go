package cluster

import (
	"errors"
	"fmt"
	"log"
	"strings"
	"syscall"

	"github.com/hashicorp/memberlist"
)

// bindAttempts bounds the retries when port 0 is asked for: the kernel picks
// a free TCP port, but the same UDP port may be taken.
const bindAttempts = 10

// newTransport binds memberlist's TCP+UDP transport to BindAddr and returns
// it with the port it bound.
func (c *Config) newTransport(logger *log.Logger) (*memberlist.NetTransport, int, error) {
	ip, port, err := splitIPPort(c.BindAddr, true)
	if err != nil {
		return nil, 0, fmt.Errorf("BindAddr %q: %w", c.BindAddr, err)
	}
	attempts := 1
	if port == 0 {
		attempts = bindAttempts
	}
	for range attempts {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{ip.String()},
			BindPort:  port,
			Logger:    logger,
		})
		if err == nil {
			return nt, nt.GetAutoBindPort(), nil
		}
		if !inUse(err) {
			break
		}
	}
	if inUse(err) {
		return nil, 0, fmt.Errorf("binding gossip on BindAddr %s: %w (%v)", c.BindAddr, ErrAddrInUse, err)
	}
	return nil, 0, fmt.Errorf("binding gossip on BindAddr %s: %w", c.BindAddr, err)
}

// ErrAddrInUse is wrapped by New's error when BindAddr's port is taken,
// TCP or UDP.
var ErrAddrInUse = errors.New("address already in use")

// inUse reports whether err is EADDRINUSE; memberlist's transport keeps
// only the text of its listeners' errors.
func inUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || err != nil && strings.Contains(err.Error(), "address already in use")
}
