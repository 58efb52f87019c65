package cluster

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// Role says what a member does in the farm.
type Role string

// Roles of a member.
const (
	RoleGateway Role = "gateway"
	RoleExit    Role = "exit"
)

// metaVersion is the first byte of encoded metadata; a decoder refuses other
// versions, so a future layout can be told apart.
const metaVersion = 1

// maxField is the largest encoded string field of [Meta], in bytes.
const maxField = 255

// Meta is what a node tells every other node about itself through
// memberlist's node metadata. Its encoding must fit [memberlist.MetaMaxSize]
// (512 bytes); [Config.Validate] and [Cluster.UpdateMeta] refuse metadata
// that would not.
type Meta struct {
	// Role is RoleGateway or RoleExit. Required.
	Role Role `json:"role"`
	// ID identifies the node across the farm; on exits it is the pool's exit
	// id. Required.
	ID string `json:"id"`
	// DC is the data centre, lower-case.
	DC string `json:"dc,omitempty"`
	// Pool is the exit's IP pool (the customer's zone). Required on exits.
	Pool string `json:"pool,omitempty"`
	// Country is the ISO 3166 alpha-2 code of the exit's egress IPs.
	Country string `json:"country,omitempty"`
	// City is the city of the exit's egress IPs.
	City string `json:"city,omitempty"`
	// Weight is the exit's share for the weighted policy; 0 means 1.
	Weight int `json:"weight,omitempty"`
	// Capacity is the exit's maximum of concurrent tunnels; 0 is unlimited.
	Capacity int `json:"capacity,omitempty"`
	// ProxyAddr is the host:port at which gateways reach the exit's proxy.
	// Required on exits.
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// Version is the farmgate version the node runs.
	Version string `json:"version,omitempty"`
	// Draining is set by the node itself ([Cluster.SetDraining]) when it
	// stops taking new tunnels.
	Draining bool `json:"draining,omitempty"`
	// EgressCount is the number of the exit's egress IPs. Filled in by the
	// cluster from [Config.Egress]; what callers set is ignored.
	EgressCount int `json:"egress_count,omitempty"`
	// EgressHash is a hash of the exit's egress IP list, so gateways know
	// when the list they hold is stale. Filled in by the cluster.
	EgressHash uint32 `json:"egress_hash,omitempty"`
}

// errBadMeta is wrapped by every metadata decoding error.
var errBadMeta = errors.New("bad node metadata")

// roleCodes maps roles to their one-byte wire code.
var roleCodes = map[Role]byte{RoleGateway: 1, RoleExit: 2}

// appendMeta appends the binary encoding of m to b.
func appendMeta(b []byte, m *Meta) []byte {
	w := writer{b: b}
	w.byte(metaVersion)
	w.byte(roleCodes[m.Role])
	w.bool(m.Draining)
	w.string(m.ID)
	w.string(m.DC)
	w.string(m.Pool)
	w.string(m.Country)
	w.string(m.City)
	w.string(m.ProxyAddr)
	w.string(m.Version)
	w.uvarint(uint64(max(m.Weight, 0)))
	w.uvarint(uint64(max(m.Capacity, 0)))
	w.uvarint(uint64(max(m.EgressCount, 0)))
	w.uint32(m.EgressHash)
	return w.b
}

// decodeMeta decodes metadata written by appendMeta. It never panics, and it
// refuses trailing bytes, unknown roles and versions.
func decodeMeta(b []byte) (Meta, error) {
	r := reader{b: b}
	var m Meta
	if v := r.byte(); r.err == nil && v != metaVersion {
		return Meta{}, fmt.Errorf("decoding metadata version %d: %w", v, errBadMeta)
	}
	switch r.byte() {
	case 1:
		m.Role = RoleGateway
	case 2:
		m.Role = RoleExit
	default:
		r.fail(errors.New("unknown role"))
	}
	m.Draining = r.bool()
	m.ID = r.string()
	m.DC = r.string()
	m.Pool = r.string()
	m.Country = r.string()
	m.City = r.string()
	m.ProxyAddr = r.string()
	m.Version = r.string()
	m.Weight = r.int()
	m.Capacity = r.int()
	m.EgressCount = r.int()
	m.EgressHash = r.uint32()
	if r.err == nil && len(r.b) != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return Meta{}, fmt.Errorf("decoding metadata: %w: %w", errBadMeta, r.err)
	}
	if m.ID == "" {
		return Meta{}, fmt.Errorf("decoding metadata: %w: empty id", errBadMeta)
	}
	return m, nil
}

// validate checks m as this node's own metadata and names the wrong field.
func (m *Meta) validate() error {
	switch m.Role {
	case RoleGateway, RoleExit:
	default:
		return fmt.Errorf("Meta.Role %q: want %q or %q", m.Role, RoleGateway, RoleExit)
	}
	fields := []struct{ name, v string }{
		{"Meta.ID", m.ID}, {"Meta.DC", m.DC}, {"Meta.Pool", m.Pool},
		{"Meta.Country", m.Country}, {"Meta.City", m.City},
		{"Meta.ProxyAddr", m.ProxyAddr}, {"Meta.Version", m.Version},
	}
	largest := fields[0]
	for _, f := range fields {
		if len(f.v) > maxField {
			return fmt.Errorf("%s: %d bytes, at most %d", f.name, len(f.v), maxField)
		}
		if len(f.v) > len(largest.v) {
			largest = f
		}
	}
	switch {
	case m.ID == "":
		return errors.New("Meta.ID: empty")
	case m.Weight < 0:
		return fmt.Errorf("Meta.Weight %d: negative", m.Weight)
	case m.Capacity < 0:
		return fmt.Errorf("Meta.Capacity %d: negative", m.Capacity)
	}
	if m.Role == RoleExit {
		if m.Pool == "" {
			return errors.New("Meta.Pool: empty (required on exits)")
		}
		if _, port, err := net.SplitHostPort(m.ProxyAddr); err != nil {
			return fmt.Errorf("Meta.ProxyAddr %q: want host:port: %w", m.ProxyAddr, err)
		} else if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return fmt.Errorf("Meta.ProxyAddr %q: bad port", m.ProxyAddr)
		}
	}
	if n := len(appendMeta(nil, m)); n > memberlist.MetaMaxSize {
		return fmt.Errorf("Meta: encodes to %d bytes, memberlist allows %d (largest field %s, %d bytes)",
			n, memberlist.MetaMaxSize, largest.name, len(largest.v))
	}
	return nil
}

// egressHash hashes an ordered list of egress addresses (FNV-1a, 32 bits);
// an empty list hashes to 0.
func egressHash(addrs []netip.Addr) uint32 {
	if len(addrs) == 0 {
		return 0
	}
	h := fnv.New32a()
	var buf []byte
	for _, a := range addrs {
		buf = appendAddr(buf[:0], a)
		h.Write(buf)
	}
	return h.Sum32()
}
