package farmtls

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// This file is the two ends of a link: the exit's listener and the
// gateway's dial. Both are TLS 1.3 only, so a link resumes with a session
// ticket and its handshake costs one round trip.

// ServerConfig is the exit's listener configuration: it asks every client
// for a certificate, accepts only a gateway's that chains to the farm CA,
// and serves the exit's certificate. Each handshake takes the certificate
// and CA in use at that moment (GetConfigForClient), so a reload applies
// to the next link. Session tickets are encrypted with keys of this
// config, which a reload keeps: links resume across a rotation, as long as
// the gateway's certificate in the ticket still chains to the CA (the
// server checks on resumption). For an exit's Holder.
func (h *Holder) ServerConfig() *tls.Config { return h.server }

func (h *Holder) newServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return h.cur.Load().server, nil
		},
	}
}

// handshakeServerConfig is what one exit handshake uses with m.
func (h *Holder) handshakeServerConfig(m *material) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*m.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			// crypto/tls verified the chain, with the client-auth EKU that
			// only gateway certificates carry, on a full handshake and again
			// on resumption; the role in the name is the second lock.
			if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
				return errors.New("farmgate link: gateway certificate not verified")
			}
			if err := checkIdentity(cs.VerifiedChains[0][0], RoleGateway, ""); err != nil {
				return fmt.Errorf("farmgate link: %w", err)
			}
			return nil
		},
	}
}

// ClientConfig is a gateway's configuration to dial the exit exitID: it
// presents the gateway's certificate, accepts only an exit certificate
// that chains to the farm CA and names exitID (so neither the exit's
// address in someone else's hands nor another exit's certificate passes),
// and resumes sessions from a cache every ClientConfig of h shares. The
// certificate and CA are those in use at each handshake. Use it with
// tls.Client over the dialled TCP connection, then HandshakeContext. For a
// gateway's Holder.
func (h *Holder) ClientConfig(exitID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// crypto/tls checks a server's DNS name or IP; an exit is named by
		// the URI SAN that VerifyConnection checks, with the chain. With no
		// ServerName the session cache is keyed by the exit's address.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return h.cur.Load().cert, nil
		},
		VerifyConnection:   func(cs tls.ConnectionState) error { return h.verifyExit(cs, exitID) },
		ClientSessionCache: h.sessions,
	}
}

// verifyExit checks an exit's certificate against the CA in use, on a
// full handshake and on resumption alike.
func (h *Holder) verifyExit(cs tls.ConnectionState, exitID string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("farmgate link to exit %q: no certificate", exitID)
	}
	if err := verify(cs.PeerCertificates, h.cur.Load().roots, RoleExit, h.cfg.Now()); err != nil {
		return fmt.Errorf("farmgate link to exit %q: %w", exitID, err)
	}
	if err := checkIdentity(cs.PeerCertificates[0], RoleExit, exitID); err != nil {
		return fmt.Errorf("farmgate link to exit %q: %w", exitID, err)
	}
	return nil
}
