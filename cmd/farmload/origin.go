//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// originIPs are the loopback addresses every origin listens on, so the
// tunnels spread over several destination addresses and no single 4-tuple
// space (source IP, destination IP:port) runs out of ephemeral ports.
var originIPs = []string{"127.0.9.1", "127.0.9.2", "127.0.9.3", "127.0.9.4", "127.0.9.5", "127.0.9.6", "127.0.9.7", "127.0.9.8"}

// origins are the destinations of the load, all in this process: an echo
// TCP server, a bulk TCP server (writes zeros until the peer closes) and an
// HTTP server answering GET /ip (the demo origin's handler).
type origins struct {
	echo, bulk, web targets

	lns  []net.Listener
	srv  *http.Server
	wg   sync.WaitGroup // accept loops and connection handlers
	mu   sync.Mutex     // guards conns
	conn map[net.Conn]struct{}
}

// targets is a list of host:port that next hands out round-robin.
type targets struct {
	addrs []string
	n     atomic.Uint32
}

func (t *targets) next() string {
	return t.addrs[int(t.n.Add(1))%len(t.addrs)]
}

func startOrigins() (*origins, error) {
	o := &origins{conn: map[net.Conn]struct{}{}}
	quiet := log.New(io.Discard, "", 0)
	o.srv = &http.Server{Handler: demo.OriginHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet}
	for _, ip := range originIPs {
		for _, kind := range []string{"echo", "bulk", "web"} {
			ln, err := net.Listen("tcp4", ip+":0")
			if err != nil {
				o.close()
				return nil, fmt.Errorf("listen %s origin on %s: %w", kind, ip, err)
			}
			o.lns = append(o.lns, ln)
			addr := ln.Addr().String()
			switch kind {
			case "echo":
				o.echo.addrs = append(o.echo.addrs, addr)
				o.serveTCP(ln, echo)
			case "bulk":
				o.bulk.addrs = append(o.bulk.addrs, addr)
				o.serveTCP(ln, bulk)
			case "web":
				o.web.addrs = append(o.web.addrs, addr)
				o.wg.Add(1)
				go func() { defer o.wg.Done(); o.srv.Serve(ln) }()
			}
		}
	}
	return o, nil
}

// serveTCP accepts on ln and runs handle on each connection until close.
func (o *origins) serveTCP(ln net.Listener, handle func(net.Conn)) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond) // EMFILE and friends: back off
				continue
			}
			o.mu.Lock()
			o.conn[c] = struct{}{}
			o.mu.Unlock()
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				handle(c)
				c.Close()
				o.mu.Lock()
				delete(o.conn, c)
				o.mu.Unlock()
			}()
		}
	}()
}

// echo writes back what it reads until the peer closes.
func echo(c net.Conn) {
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// bulkChunk is what the bulk origin writes, over and over.
var bulkChunk = make([]byte, 256<<10)

// bulk writes zeros until the peer closes.
func bulk(c net.Conn) {
	for {
		if _, err := c.Write(bulkChunk); err != nil {
			return
		}
	}
}

// close stops the listeners, cuts every live connection and waits for the
// handlers to return.
func (o *origins) close() {
	for _, ln := range o.lns {
		ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if o.srv.Shutdown(ctx) != nil {
		o.srv.Close()
	}
	o.mu.Lock()
	for c := range o.conn {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}
