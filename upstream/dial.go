package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/proxy"

	"github.com/farmgate/farmgate/internal/dataplane/link"
	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// SchemeFarmgate marks an exit address as a farmgate exit node: the gateway
// dials it with HTTP CONNECT and authenticates with its exit token. Other
// schemes (http://user:pass@host, socks5://...) are third-party upstreams
// reached through golang.org/x/net/proxy.
const SchemeFarmgate = "farmgate"

func init() {
	// An HTTP CONNECT upstream is as usable an exit as a SOCKS5 one.
	proxy.RegisterDialerType("http", newHTTPDialerFromURL)
}

// ExitError is an exit's refusal of a tunnel or request, carrying the status
// and the X-Farmgate-Error reason the exit answered with.
type ExitError struct {
	Status int
	Reason string
}

func (e *ExitError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("exit answered %d %s", e.Status, e.Reason)
	}
	return fmt.Sprintf("exit answered %d", e.Status)
}

// DestinationFault reports whether the exit refused because of the
// destination (forbidden, unreachable, slow), which is not the exit's fault
// and must neither eject it nor trigger failover.
func (e *ExitError) DestinationFault() bool {
	return strings.HasPrefix(e.Reason, "destination_")
}

// CustomerFault reports whether the exit refused the request as malformed
// (bad_request): the customer's doing, the same through any exit.
func (e *ExitError) CustomerFault() bool {
	return e.Reason == wire.ReasonBadRequest
}

type egressKey struct{}

// withEgress asks the exit dialed under ctx to bind the given source IP.
func withEgress(ctx context.Context, ip netip.Addr) context.Context {
	if !ip.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, egressKey{}, ip)
}

func egressFrom(ctx context.Context) (netip.Addr, bool) {
	ip, ok := ctx.Value(egressKey{}).(netip.Addr)
	return ip, ok
}

// connectDialer opens tunnels through an HTTP proxy with CONNECT. It returns
// the raw *net.TCPConn whenever the proxy sent nothing past its reply and
// the link is plaintext, so the relay can splice.
type connectDialer struct {
	addr    string // proxy host:port
	auth    string // Proxy-Authorization value, "" for none
	forward proxy.ContextDialer
	// tls, for a farmgate exit whose links are encrypted, is the mutual
	// TLS configuration that names the exit (farmtls.Holder.ClientConfig):
	// every connection to the exit is a *tls.Conn over the TCP one. nil:
	// plaintext.
	tls *tls.Config
	// handshakeTimeout bounds the TLS handshake, as the dialer's timeout
	// bounds the TCP connect.
	handshakeTimeout time.Duration
	// replyTimeout bounds the wait for the proxy's reply to CONNECT, which
	// includes the proxy's own dial of the destination.
	replyTimeout time.Duration
	// links, for farmgate exits, keeps the exit's idle links: tunnels are
	// offered a link and reuse one when there is one. nil otherwise.
	links *linkPool
}

var _ proxy.ContextDialer = (*connectDialer)(nil)

func newHTTPDialerFromURL(u *url.URL, forward proxy.Dialer) (proxy.Dialer, error) {
	cd, ok := forward.(proxy.ContextDialer)
	if !ok {
		cd = contextDialerFunc(func(_ context.Context, network, addr string) (net.Conn, error) {
			return forward.Dial(network, addr)
		})
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &connectDialer{addr: host, auth: basicAuth(u.User), forward: cd, replyTimeout: 15 * time.Second}, nil
}

type contextDialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f contextDialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

func basicAuth(u *url.Userinfo) string {
	if u == nil {
		return ""
	}
	pass, _ := u.Password()
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass))
}

func (d *connectDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// ErrExitDial marks a failure to reach the exit itself (as opposed to a
// refusal the exit answered with).
var ErrExitDial = errors.New("exit unreachable")

// errStaleLink marks a kept link the exit had closed before it read the
// CONNECT: nothing happened at the exit, so a fresh connection is tried.
var errStaleLink = errors.New("kept link closed by the exit")

func (d *connectDialer) DialContext(ctx context.Context, network, target string) (net.Conn, error) {
	conn, _, err := d.dial(ctx, target, nil)
	return conn, err
}

// dialOwn opens a tunnel the gateway reads and writes itself (to speak
// HTTP to the origin), and sends first through it. On a link the tunnel
// is a *link.Conn, and first leaves with the CONNECT when the exit is
// known to take links: a request to a new origin then costs one round
// trip to the exit, as through the exit's HTTP proxy. sent says whether
// first went out.
func (d *connectDialer) dialOwn(ctx context.Context, target string, first []byte) (conn net.Conn, sent bool, err error) {
	return d.dial(ctx, target, &ownTunnel{first: first})
}

// ownTunnel asks dial for a tunnel the gateway uses itself.
type ownTunnel struct {
	first []byte
	sent  bool
}

func (d *connectDialer) dial(ctx context.Context, target string, own *ownTunnel) (net.Conn, bool, error) {
	if d.links != nil {
		if c, ok := d.links.get(); ok {
			conn, err := d.open(ctx, c, target, true, own)
			if !errors.Is(err, errStaleLink) {
				if err == nil {
					d.links.kept.Inc()
				}
				return conn, own != nil && own.sent, err
			}
			d.links.stale.Inc()
		}
	}
	c, err := d.connect(ctx)
	if err != nil {
		return nil, false, err
	}
	conn, err := d.open(ctx, c, target, false, own)
	switch conn.(type) {
	case *LinkTunnel, *link.Conn:
		d.links.fresh.Inc()
	}
	return conn, own != nil && own.sent, err
}

// connect opens a connection to the proxy: TCP, and the TLS handshake
// over it when the links are encrypted. Failures are ErrExitDial: the
// exit, or something that claims its address, is not the one to talk to.
func (d *connectDialer) connect(ctx context.Context) (net.Conn, error) {
	c, err := d.forward.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrExitDial, err)
	}
	if d.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, d.tls)
	hctx := ctx
	if d.handshakeTimeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, d.handshakeTimeout)
		defer cancel()
	}
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: tls handshake: %w", ErrExitDial, err)
	}
	return tc, nil
}

// open sends CONNECT on c (kept: a link from the pool) and reads the reply.
// c is closed unless the tunnel is up.
func (d *connectDialer) open(ctx context.Context, c net.Conn, target string, kept bool, own *ownTunnel) (net.Conn, error) {
	deadline := time.Now().Add(d.replyTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.SetDeadline(deadline)
	// Cancelling ctx must unblock the handshake.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	conn, err := d.handshake(ctx, c, target, kept, own)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return conn, nil
}

func (d *connectDialer) handshake(ctx context.Context, c net.Conn, target string, kept bool, own *ownTunnel) (net.Conn, error) {
	var b strings.Builder
	b.Grow(160)
	b.WriteString("CONNECT ")
	b.WriteString(target)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(target)
	b.WriteString("\r\n")
	if d.auth != "" {
		b.WriteString("Proxy-Authorization: ")
		b.WriteString(d.auth)
		b.WriteString("\r\n")
	}
	if ip, ok := egressFrom(ctx); ok {
		b.WriteString(wire.HeaderEgress + ": ")
		b.WriteString(ip.String())
		b.WriteString("\r\n")
	}
	canLink := d.links != nil
	if canLink {
		b.WriteString(link.Header + ": " + link.Version + "\r\n")
		if own != nil {
			// A tunnel to an origin carries request after request; its
			// link should outlive a long answer.
			b.WriteString(link.HeaderFramed + ": 1\r\n")
		}
	}
	b.WriteString("\r\n")
	head := []byte(b.String())
	// Bytes behind the head are framed, so they go only to an exit that
	// has taken a link before (and so will take this one). A stale kept
	// link may have had them already: this attempt decides anew.
	if own != nil {
		own.sent = false
	}
	if own != nil && len(own.first) > 0 && canLink && d.links.taken.Load() && len(own.first) <= link.MaxChunk {
		head = binary.BigEndian.AppendUint32(head, uint32(len(own.first)))
		head = append(head, own.first...)
		own.sent = true
	}
	if _, err := c.Write(head); err != nil {
		if kept {
			err = fmt.Errorf("%w: %w", errStaleLink, err)
		}
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	br := replyBufs.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		if br != nil {
			br.Reset(nil)
			replyBufs.Put(br)
		}
	}()
	status, hdr, err := readReplyHead(br)
	if err != nil {
		// EOF or a reset before the first byte of a reply: the exit closed
		// the kept link before it read the CONNECT.
		if kept && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			err = fmt.Errorf("%w: %w", errStaleLink, err)
		}
		return nil, fmt.Errorf("read CONNECT reply: %w", err)
	}
	if status/100 != 2 {
		return nil, &ExitError{Status: status, Reason: hdr.Get(wire.HeaderError)}
	}
	if canLink && hdr.Get(link.Header) == link.Version {
		d.links.taken.Store(true)
		var early []byte
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			early = bytes.Clone(b)
		}
		if own != nil {
			return link.NewConn(c, early), nil
		}
		return &LinkTunnel{Conn: c, home: d.links, early: early}, nil
	}
	if own != nil && own.sent {
		// Framed bytes went to an exit that answered as a plain proxy: they
		// reached the destination as they were.
		return nil, fmt.Errorf("exit took the tunnel without the link it took before: %w", link.ErrProtocol)
	}
	if n := br.Buffered(); n > 0 {
		// The destination spoke first and its bytes arrived with the
		// reply: they go to the customer before the relay starts.
		b, _ := br.Peek(n)
		return &EarlyConn{Conn: c, Early: bytes.Clone(b)}, nil
	}
	return c, nil
}

// EarlyConn is a tunnel whose destination spoke first: Early holds what
// arrived with the exit's reply, to be sent on before Conn is read.
type EarlyConn struct {
	net.Conn
	Early []byte
}

// replyBufs holds readers for exits' CONNECT replies, which are short.
var replyBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// readReplyHead reads an HTTP response head and returns the status and the
// headers. A CONNECT reply has no body worth reading.
func readReplyHead(br *bufio.Reader) (int, textproto.MIMEHeader, error) {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return 0, nil, err
	}
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") || len(rest) < 3 {
		return 0, nil, fmt.Errorf("malformed status line %q", line)
	}
	status, err := strconv.Atoi(rest[:3])
	if err != nil {
		return 0, nil, fmt.Errorf("malformed status line %q", line)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return 0, nil, err
	}
	return status, hdr, nil
}

// Exit is how the gateway reaches one exit: a dialer for tunnels, and the
// connections kept to send absolute-form requests over.
type Exit struct {
	addr   string // the exit's URL, to notice a changed address
	dialer proxy.ContextDialer
	// links keeps a farmgate exit's idle links; nil for other exits.
	links *linkPool
	// proxyAuth is set on requests sent to an HTTP proxy; "" for SOCKS5.
	proxyAuth string
	// farmgate: the exit is ours and takes the egress IP header.
	farmgate bool
	// client sends requests in absolute form to an HTTP proxy (a
	// third-party one, or a farmgate exit for https:// URLs); nil for
	// SOCKS5 upstreams.
	client *exitClient
	// origins sends requests to origins through tunnels across the exit
	// (http:// ones through a farmgate exit, all through a SOCKS5 one); nil
	// for third-party HTTP proxies, which often allow CONNECT to port 443
	// only.
	origins *originClient
}

// build makes the way to reach exit id at rawURL.
func (s *Set) build(id, rawURL string) (*Exit, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse exit address: %w", err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("exit address %q has no host", rawURL)
	}
	// No TCP keepalive probes: the watcher's idle timeout ends silent
	// tunnels, and four setsockopt calls per tunnel are not free.
	nd := &net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: -1}
	up := &Exit{addr: rawURL}
	switch u.Scheme {
	case SchemeFarmgate, "http", "https":
		var cd *connectDialer
		switch u.Scheme {
		case "https":
			// A third-party HTTP proxy spoken to over TLS, verified
			// against the system's roots (SSL_CERT_FILE adds a private CA).
			cd = &connectDialer{addr: hostPort(u, "443"), auth: basicAuth(u.User), forward: nd,
				tls: &tls.Config{ServerName: u.Hostname(), RootCAs: s.cfg.UpstreamRoots, MinVersion: tls.VersionTLS12,
					NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(64)},
				handshakeTimeout: s.cfg.DialTimeout}
		case SchemeFarmgate:
			cd = &connectDialer{addr: u.Host, auth: "Bearer " + s.cfg.Token, forward: nd,
				links: newLinkPool(s.cfg.MaxIdle, s.m), handshakeTimeout: s.cfg.DialTimeout}
			if s.cfg.ExitTLS != nil {
				cd.tls = s.cfg.ExitTLS(id)
			}
		default:
			// Third-party HTTP upstreams go through x/net/proxy like SOCKS5 ones.
			d, err := proxy.FromURL(u, nd)
			if err != nil {
				return nil, fmt.Errorf("exit address %q: %w", rawURL, err)
			}
			cd = d.(*connectDialer)
		}
		cd.replyTimeout = s.cfg.ReplyTimeout
		up.dialer, up.links = cd, cd.links
		up.farmgate = u.Scheme == SchemeFarmgate
		up.proxyAuth = cd.auth
		dial := nd.DialContext
		if cd.tls != nil {
			dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return cd.connect(ctx) }
		}
		up.client = newExitClient(cd.addr, dial, s.cfg.ReplyTimeout, s.cfg.MaxIdle)
		if up.farmgate {
			up.origins = newOriginClient(cd.dialOwn, cd.links, s.cfg.ReplyTimeout, s.cfg.MaxIdle, &s.idleOrigins, s.m)
		}
	case "socks5", "socks5h":
		d, err := proxy.FromURL(u, nd)
		if err != nil {
			return nil, fmt.Errorf("exit address %q: %w", rawURL, err)
		}
		cd, ok := d.(proxy.ContextDialer)
		if !ok {
			return nil, fmt.Errorf("exit address %q: dialer cannot take a context", rawURL)
		}
		up.dialer = cd
		dial := func(ctx context.Context, target string, _ []byte) (net.Conn, bool, error) {
			c, err := cd.DialContext(ctx, "tcp", target)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %w", ErrExitDial, err)
			}
			return c, false, nil
		}
		up.origins = newOriginClient(dial, nil, s.cfg.ReplyTimeout, s.cfg.MaxIdle, &s.idleOrigins, s.m)
	default:
		return nil, fmt.Errorf("exit address %q: unsupported scheme %q (want farmgate, http, https or socks5)", rawURL, u.Scheme)
	}
	return up, nil
}

// sweep closes the connections to the exit idle for longer than they are
// kept.
func (u *Exit) sweep(now time.Time) {
	if u.links != nil {
		u.links.sweep(now)
	}
	if u.client != nil {
		u.client.idle.sweep(now)
	}
	if u.origins != nil {
		u.origins.sweep(now)
	}
}

// closeIdle closes the kept-alive connections to the exit.
func (u *Exit) closeIdle() {
	if u.links != nil {
		u.links.closeIdle()
	}
	if u.client != nil {
		u.client.idle.closeIdle()
	}
	if u.origins != nil {
		u.origins.closeIdle()
	}
}

// ErrBadRequest marks a request that cannot be sent as it is (a head
// net/http refuses to write): the customer's doing, whichever exit.
var ErrBadRequest = errors.New("request cannot be sent")

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
