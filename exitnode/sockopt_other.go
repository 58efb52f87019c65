//go:build !linux

package exitnode

import "syscall"

// bindAddressNoPort does nothing outside Linux: IP_BIND_ADDRESS_NO_PORT is a
// Linux socket option. Exits run on Linux; this lets the package build
// elsewhere for development.
func bindAddressNoPort(_, _ string, _ syscall.RawConn) error { return nil }
