package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/pool"
)

// socks5Server is a minimal SOCKS5 proxy (RFC 1928, user/password auth of
// RFC 1929, CONNECT only) standing in for a third-party upstream.
func socks5Server(t *testing.T, user, pass string) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		hdr := make([]byte, 2)
		if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != 5 {
			return
		}
		io.ReadFull(br, make([]byte, hdr[1]))
		c.Write([]byte{5, 2}) // user/password
		ver, _ := br.ReadByte()
		ulen, _ := br.ReadByte()
		u := make([]byte, ulen)
		io.ReadFull(br, u)
		plen, _ := br.ReadByte()
		p := make([]byte, plen)
		io.ReadFull(br, p)
		if ver != 1 || string(u) != user || string(p) != pass {
			c.Write([]byte{1, 1})
			return
		}
		c.Write([]byte{1, 0})
		req := make([]byte, 4)
		if _, err := io.ReadFull(br, req); err != nil || req[1] != 1 {
			return
		}
		var host string
		switch req[3] {
		case 1:
			a := make([]byte, 4)
			io.ReadFull(br, a)
			host = net.IP(a).String()
		case 3:
			n, _ := br.ReadByte()
			h := make([]byte, n)
			io.ReadFull(br, h)
			host = string(h)
		default:
			return
		}
		pb := make([]byte, 2)
		io.ReadFull(br, pb)
		d, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(pb)))))
		if err != nil {
			c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
			return
		}
		defer d.Close()
		c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
		go func() { io.Copy(d, br); d.(*net.TCPConn).CloseWrite() }()
		io.Copy(c, d)
	})
}

// httpProxyServer is a plain third-party HTTP proxy with Basic auth:
// CONNECT and absolute-form GET.
func httpProxyServer(t *testing.T, user, pass string) string {
	t.Helper()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != want {
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		if r.Method == http.MethodConnect {
			d, err := net.Dial("tcp", r.Host)
			if err != nil {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			c, rw, _ := w.(http.Hijacker).Hijack()
			rw.WriteString("HTTP/1.1 200 OK\r\n\r\n")
			rw.Flush()
			go func() { io.Copy(d, rw); d.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, d)
			c.Close()
			d.Close()
			return
		}
		r.RequestURI = ""
		r.Header.Del("Proxy-Authorization")
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A static third-party upstream (SOCKS5 or HTTP with credentials) is as
// usable an exit as our own, for tunnels and plain requests alike.
func TestThirdPartyUpstreamsAsExits(t *testing.T) {
	t.Parallel()
	f := startFarm(t, func(c *demo.Config) {
		c.Customers = "customers:\n  - user: demo\n    password: demo\n    pools: [vendor_socks, vendor_http]\n"
	})
	f.Pool.Upsert(pool.Exit{ID: "vs-1", Pool: "vendor_socks", DC: "eu", Addr: "socks5://vu:vp@" + socks5Server(t, "vu", "vp")})
	f.Pool.Upsert(pool.Exit{ID: "vh-1", Pool: "vendor_http", DC: "eu", Addr: "http://hu:hp@" + httpProxyServer(t, "hu", "hp")})
	for zone, exit := range map[string]string{"vendor_socks": "vs-1", "vendor_http": "vh-1"} {
		for _, url := range []string{"http://" + f.Origin.HTTPAddr + "/headers", "https://" + f.Origin.TLSAddr + "/headers"} {
			r := curl(t, proxyURL(f, "demo-zone-"+zone), url)
			if r.status != 200 {
				t.Errorf("%s %s: %d %s", zone, url, r.status, r.all.Get("X-Farmgate-Error"))
				continue
			}
			if got := r.all.Get("X-Farmgate-Exit"); got != exit {
				t.Errorf("%s %s: served by %q, want %s", zone, url, got, exit)
			}
			for _, leak := range []string{"Bearer", "Proxy-Authorization", "X-Farmgate-Egress"} {
				if strings.Contains(r.body, leak) {
					t.Errorf("%s %s: origin saw %s: %s", zone, url, leak, r.body)
				}
			}
		}
	}
}
