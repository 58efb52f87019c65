package cluster

import (
	"fmt"
	"log"
	"strings"

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
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, 0, fmt.Errorf("binding gossip on BindAddr %s: %w", c.BindAddr, err)
}
