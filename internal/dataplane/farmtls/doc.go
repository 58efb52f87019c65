// Package farmtls holds the farm's certificates and the TLS configurations
// of its links: a farm CA that signs node certificates, a holder that keeps
// a node's certificate, key and CA loaded and reloads them when the files
// change, and the mutual-TLS 1.3 configurations an exit serves and a
// gateway dials with.
//
// A node certificate names the node's role and id in one URI SAN,
// farmgate://ROLE/ID (see NodeURI): ids are any non-empty string in
// farmgate (cluster.Meta, exitnode.Config), so they cannot be DNS names,
// and a URI path escapes whatever they hold. Exit certificates carry the
// server-auth EKU, gateway certificates the client-auth EKU, so one cannot
// stand in for the other even before the role in the URI is checked.
//
// The exit accepts only gateway certificates that chain to the farm CA;
// the gateway accepts only an exit certificate that chains to the farm CA
// and names the exit id it meant to reach, so an exit's stolen address (or
// another exit's certificate) cannot impersonate it. Both take their
// certificate and CA from the holder at each handshake: a rotated file is
// used by the next link, and live links keep the keys they agreed on.
//
// The package is not a general PKI: no revocation, no intermediates of its
// own making, no other key types than ECDSA P-256. It imports no other
// package of farmgate.
package farmtls
