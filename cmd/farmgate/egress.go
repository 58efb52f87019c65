package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// checkEgress refuses, before the exit serves, an --egress address this
// host cannot send from: every tunnel given that address would fail with
// "cannot assign requested address". It binds a UDP socket to each (no
// packet is sent, no port kept), as the exit's tunnels bind theirs.
func checkEgress(addrs []netip.Addr) error {
	for _, a := range addrs {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			return usageError{fmt.Errorf("--egress: %s cannot be bound on this host (%v): list only addresses configured on its interfaces", a, rootCause(err))}
		}
		c.Close()
	}
	return nil
}

// rootCause is the innermost error of a chain ("cannot assign requested
// address" rather than "listen udp 203.0.113.10:0: bind: ...").
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
