//go:build !linux

package tcpinfo

import "net"

func read(net.Conn) (Info, bool) { return Info{}, false }
