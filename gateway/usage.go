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

// bill is the settlement of the request being served on a connection: the
// forwarding code leaves it (owe) when the request went through an exit,
// and serveRequests pays it once the answer is written, with the bytes the
// request moved on the customer's connection.
type bill struct {
	mu     sync.Mutex // guards settle: the answer's body may be closed off the connection's goroutine
	settle func(up, down int64)
}

type billKey struct{}

// withBill returns ctx carrying b, for forward to find.
func withBill(ctx context.Context, b *bill) context.Context {
	return context.WithValue(ctx, billKey{}, b)
}

// billFrom returns the bill of the request with ctx, or nil.
func billFrom(ctx context.Context) *bill {
	b, _ := ctx.Value(billKey{}).(*bill)
	return b
}

func (b *bill) owe(settle func(up, down int64)) {
	b.mu.Lock()
	b.settle = settle
	b.mu.Unlock()
}

// pay settles the request just answered, if it was served through an exit.
func (b *bill) pay(up, down int64) {
	b.mu.Lock()
	settle := b.settle
	b.settle = nil
	b.mu.Unlock()
	if settle != nil {
		settle(up, down)
	}
}
