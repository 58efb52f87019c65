package cluster

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// DecodeMeta, EncodeMeta and DecodeState expose the wire codecs to tests.
var (
	DecodeMeta  = decodeMeta
	EncodeMeta  = func(m *Meta) []byte { return appendMeta(nil, m) }
	DecodeState = func(b []byte) error { _, err := decodeState(b); return err }
	// NotifyMsg feeds a user message to a cluster as if gossiped.
	NotifyMsg = func(c *Cluster, b []byte) { (*delegate)(c).NotifyMsg(b) }
)

// CountBytes makes the cluster built from cfg add to n every packet byte it
// sends and every byte of the streams it dials, both directions (a stream's
// reply is counted by the dialer, not the replier): summed over all nodes, n
// is all the gossip traffic.
func CountBytes(cfg *Config, n *atomic.Int64) {
	cfg.wrapTransport = func(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		return &countingTransport{NodeAwareTransport: t, n: n}
	}
}

type countingTransport struct {
	memberlist.NodeAwareTransport
	n *atomic.Int64
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.n.Add(int64(len(b)))
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.n.Add(int64(len(b)))
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialTimeout(addr, d)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: t.n}, nil
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialAddressTimeout(a, d)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: t.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// WithClock makes the cluster built from cfg read the time from now.
func WithClock(cfg *Config, now func() time.Time) { cfg.now = now }
