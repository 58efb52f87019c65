// What a customer is billed: the bytes on their connection to the gateway,
// every byte they sent (up) and every byte the gateway sent them (down),
// heads included, for each request or tunnel served through an exit. The
// rule is the same whichever way they came in:
//
//   - CONNECT: the CONNECT head and the gateway's 200 reply, then every
//     byte of the tunnel.
//   - SOCKS5: the greeting, the sub-negotiation and the request with their
//     replies, then every byte of the tunnel.
//   - absolute-form HTTP: the request (head and body, as sent: chunked
//     framing included) and the answer as written (head, body, framing).
//
// What the gateway refuses itself (407, 400, 429, 503, exit_failed, ...)
// is not billed. While a tunnel or a long answer runs, the meter is fed as
// it goes (a tunnel's bytes from the kernel, an answer's body every MiB) so
// a quota cuts it; when it ends, the remainder up to the exact count is
// settled.

package gateway

import (
	"context"
	"sync"
)

// biller takes, for a request served through an exit, the settlement of its
// usage, and runs it once the bytes the request moved on the customer's
// connection are known: servePlain knows them when it has written the
// answer (plainBill), net/http's server only once the answer's last byte is
// out, after the handler (servedConn).
type biller interface {
	owe(settle func(up, down int64))
}

var (
	_ biller = (*plainBill)(nil)
	_ biller = (*servedConn)(nil)
)

type billerKey struct{}

// withBiller returns ctx carrying b, for forward to find.
func withBiller(ctx context.Context, b biller) context.Context {
	return context.WithValue(ctx, billerKey{}, b)
}

// billerFrom returns the biller of the request with ctx, or nil.
func billerFrom(ctx context.Context) biller {
	b, _ := ctx.Value(billerKey{}).(biller)
	return b
}

// plainBill is the settlement of the plain request being served on a
// connection; servePlain pays it with the bytes of the request's head and
// of the answer it wrote.
type plainBill struct {
	mu     sync.Mutex // guards settle: the answer's body may be closed off the connection's goroutine
	settle func(up, down int64)
}

func (b *plainBill) owe(settle func(up, down int64)) {
	b.mu.Lock()
	b.settle = settle
	b.mu.Unlock()
}

// pay settles the request just answered, if it was served through an exit.
func (b *plainBill) pay(up, down int64) {
	b.mu.Lock()
	settle := b.settle
	b.settle = nil
	b.mu.Unlock()
	if settle != nil {
		settle(up, down)
	}
}
