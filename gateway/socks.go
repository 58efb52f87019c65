package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/farmgate/farmgate/pool"
)

// SOCKS5 (RFC 1928) with user/password authentication (RFC 1929) on the
// customer listener: the first byte 0x05 tells it from HTTP. The user name
// carries the same targeting as the HTTP proxy's; only CONNECT is served.
const (
	socksVersion    = 5
	socksUserPass   = 2
	socksNoMethod   = 0xff
	socksCmdConnect = 1
	socksAtypIPv4   = 1
	socksAtypDomain = 3
	socksAtypIPv6   = 4

	socksSucceeded           = 0
	socksGeneralFailure      = 1
	socksNotAllowed          = 2
	socksHostUnreachable     = 4
	socksTTLExpired          = 6
	socksCmdNotSupported     = 7
	socksAtypNotSupported    = 8
	socksAuthVersion         = 1
	socksAuthOK, socksAuthNo = 0, 1
)

var errSocksProtocol = errors.New("malformed SOCKS5 exchange")

// serveSOCKS runs one SOCKS5 session; it reports whether the relay took the
// connection over.
func (g *Gateway) serveSOCKS(c net.Conn, br *bufio.Reader) bool {
	c.SetDeadline(time.Now().Add(g.cfg.ReadHeaderTimeout))
	user, pass, n, err := socksAuthenticate(c, br)
	if err != nil {
		g.putBuf(br)
		return false
	}
	start := time.Now()
	a, admitErr := g.admitCredentials(g.ctx, user, pass, remoteIP(c.RemoteAddr().String()))
	if admitErr != nil && replyFor(admitErr).status == http.StatusProxyAuthRequired {
		c.Write([]byte{socksAuthVersion, socksAuthNo})
		g.refuse(c, br, socksAnswer{silent: true}, admitErr, "")
		return false
	}
	if _, err := c.Write([]byte{socksAuthVersion, socksAuthOK}); err != nil {
		g.putBuf(br)
		return false
	}
	target, m, rep, err := socksRequest(br)
	if err != nil {
		if rep != 0 {
			c.Write(socksReply(rep))
		}
		g.putBuf(br)
		return false
	}
	c.SetDeadline(time.Time{})
	if admitErr != nil {
		g.refuse(c, br, socksAnswer{}, admitErr, "")
		r := replyFor(admitErr)
		g.access(accessEvent{kind: "socks", dest: target, status: r.status, reason: r.reason, total: time.Since(start)})
		return false
	}
	ctx, cancel, leave := g.setUpContext(c, br)
	defer cancel()
	// The greeting, sub-negotiation and request are billed with the
	// tunnel, as are the two answers of 2 bytes each before its reply.
	return g.tunnel(ctx, leave, c, br, socksAnswer{}, a, target, start, [2]int64{int64(n + m), 4})
}

// socksAuthenticate reads the greeting and the user/password
// sub-negotiation, n bytes in all.
func socksAuthenticate(c net.Conn, br *bufio.Reader) (user, pass string, n int, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != socksVersion || hdr[1] == 0 {
		return "", "", 0, errSocksProtocol
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return "", "", 0, errSocksProtocol
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == socksUserPass
	}
	if !offered {
		// Customers are known by their credentials; nothing else will do.
		c.Write([]byte{socksVersion, socksNoMethod})
		return "", "", 0, fmt.Errorf("client offers no user/password authentication: %w", errSocksProtocol)
	}
	if _, err := c.Write([]byte{socksVersion, socksUserPass}); err != nil {
		return "", "", 0, err
	}
	ver, err := br.ReadByte()
	if err != nil || ver != socksAuthVersion {
		return "", "", 0, errSocksProtocol
	}
	read := func() (string, error) {
		n, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		b := make([]byte, n)
		_, err = io.ReadFull(br, b)
		return string(b), err
	}
	if user, err = read(); err != nil {
		return "", "", 0, errSocksProtocol
	}
	if pass, err = read(); err != nil {
		return "", "", 0, errSocksProtocol
	}
	return user, pass, len(hdr) + len(methods) + 3 + len(user) + len(pass), nil
}

// socksRequest reads a CONNECT request of n bytes; on error rep is the
// reply code to send (0: none, the exchange is broken).
func socksRequest(br *bufio.Reader) (target string, n int, rep byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != socksVersion {
		return "", 0, 0, errSocksProtocol
	}
	if hdr[1] != socksCmdConnect {
		return "", 0, socksCmdNotSupported, fmt.Errorf("SOCKS command %d: only CONNECT: %w", hdr[1], errSocksProtocol)
	}
	var host string
	switch hdr[3] {
	case socksAtypIPv4:
		var a [4]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return "", 0, 0, errSocksProtocol
		}
		host, n = netip.AddrFrom4(a).String(), len(a)
	case socksAtypIPv6:
		var a [16]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return "", 0, 0, errSocksProtocol
		}
		host, n = netip.AddrFrom16(a).String(), len(a)
	case socksAtypDomain:
		l, err := br.ReadByte()
		if err != nil || l == 0 {
			return "", 0, 0, errSocksProtocol
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", 0, 0, errSocksProtocol
		}
		host, n = string(b), 1+len(b)
	default:
		return "", 0, socksAtypNotSupported, fmt.Errorf("SOCKS address type %d: %w", hdr[3], errSocksProtocol)
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return "", 0, 0, errSocksProtocol
	}
	target, err = connectTarget(net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))))
	if err != nil {
		return "", 0, socksGeneralFailure, err
	}
	return target, len(hdr) + n + len(port), 0, nil
}

// socksReply is a reply with a zero bound address: the customer has no use
// for the exit's.
func socksReply(rep byte) []byte {
	return []byte{socksVersion, rep, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0}
}

// socksAnswer maps replies to SOCKS5 reply codes.
type socksAnswer struct {
	silent bool // the sub-negotiation already said no
}

func (socksAnswer) kind() string { return "socks" }

func (socksAnswer) established(c net.Conn, _ pool.Pick) (int, error) {
	return c.Write(socksReply(socksSucceeded))
}

func (a socksAnswer) refused(c net.Conn, r reply) bool {
	if !a.silent {
		c.Write(socksReply(refusals[r.reason].socks))
	}
	return false // a SOCKS5 connection carries one request
}
