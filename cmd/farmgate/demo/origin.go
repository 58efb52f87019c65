package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// Origin is the demo's destination website: it tells callers which IP they
// came from and which headers reached it, over HTTP and over TLS.
type Origin struct {
	HTTPAddr string // host:port of the plain HTTP listener
	TLSAddr  string // host:port of the TLS listener (HTTPAddr's port + 1 when free)
	CertPEM  []byte // the self-signed certificate the TLS listener presents

	srv  *http.Server
	tsrv *http.Server
}

// OriginHandler answers GET /ip (caller's IP, plain text), GET /headers
// (request headers as JSON), GET /bytes?n=N (N zero bytes), and POST /echo
// (the body back).
func OriginHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ip", func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, ap.Addr().Unmap().String())
	})
	mux.HandleFunc("GET /headers", func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h)
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > 1<<30 {
			http.Error(w, "n: want 0..1073741824", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.CopyN(w, zeros{}, n)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// The answer starts before the body is read to its end: without
		// full duplex, net/http's server stops the body once the answer's
		// head is out, and the echo ended after 512 bytes.
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	})
	return mux
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// StartOrigin listens on addr for HTTP and on the next port for TLS.
func StartOrigin(addr string) (*Origin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen origin %s: %w", addr, err)
	}
	tap := netip.MustParseAddrPort(ln.Addr().String())
	tln, err := net.Listen("tcp", netip.AddrPortFrom(tap.Addr(), tap.Port()+1).String())
	if err != nil {
		// The next port is taken; any free one will do.
		tln, err = net.Listen("tcp", netip.AddrPortFrom(tap.Addr(), 0).String())
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen origin TLS: %w", err)
	}
	cert, certPEM, err := selfSigned(tap.Addr())
	if err != nil {
		ln.Close()
		tln.Close()
		return nil, err
	}
	h := OriginHandler()
	quiet := log.New(io.Discard, "", 0)
	o := &Origin{
		HTTPAddr: ln.Addr().String(),
		TLSAddr:  tln.Addr().String(),
		CertPEM:  certPEM,
		srv:      &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet},
		tsrv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}},
	}
	go o.srv.Serve(ln)
	go o.tsrv.ServeTLS(tln, "", "")
	return o, nil
}

// Shutdown stops both listeners, waiting for requests until ctx is done.
func (o *Origin) Shutdown(ctx context.Context) error {
	return errors.Join(o.srv.Shutdown(ctx), o.tsrv.Shutdown(ctx))
}

func selfSigned(ip netip.Addr) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generate origin key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "farmgate demo origin"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IP(ip.AsSlice()), net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost", "origin.demo"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("create origin certificate: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}
