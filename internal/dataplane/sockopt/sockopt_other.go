//go:build !linux

package sockopt

import "syscall"

// Outside Linux these options do nothing: farmgate runs on Linux, and this
// lets it build elsewhere for development.

func deferAccept(_, _ string, _ syscall.RawConn) error { return nil }

// BindAddressNoPort does nothing outside Linux.
func BindAddressNoPort(_, _ string, _ syscall.RawConn) error { return nil }
