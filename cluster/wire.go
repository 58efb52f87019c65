package cluster

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// errShort is returned by a reader that runs out of bytes.
var errShort = errors.New("truncated")

// writer appends the compact binary encoding shared by node metadata, user
// messages and push/pull state: unsigned varints, and strings and byte
// slices prefixed by their length as a varint.
type writer struct{ b []byte }

func (w *writer) byte(v byte)       { w.b = append(w.b, v) }
func (w *writer) uvarint(v uint64)  { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) uint32(v uint32)   { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) string(s string)   { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *writer) bool(v bool)       { w.byte(boolByte(v)) }
func (w *writer) addr(a netip.Addr) { w.b = appendAddr(w.b, a) }

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// appendAddr encodes an address as its length (4 or 16) and its bytes.
func appendAddr(b []byte, a netip.Addr) []byte {
	s := a.AsSlice()
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// reader decodes what writer wrote. Every method checks bounds; after the
// first error every call returns a zero value and err keeps that error, so
// decoders read a whole record and check err once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail(errShort)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bool() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail(errors.New("bad boolean"))
	return false
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// int reads a varint that must fit a non-negative int32.
func (r *reader) int() int {
	v := r.uvarint()
	if v > 1<<31-1 {
		r.fail(errors.New("integer out of range"))
		return 0
	}
	return int(v)
}

func (r *reader) uint32() uint32 {
	if len(r.b) < 4 {
		r.fail(errShort)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail(errShort)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) addr() netip.Addr {
	n := int(r.byte())
	if r.err != nil {
		return netip.Addr{}
	}
	if (n != 4 && n != 16) || n > len(r.b) {
		r.fail(errors.New("bad address"))
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(r.b[:n])
	r.b = r.b[n:]
	return a
}

// count reads a list length and rejects one that could not fit in the bytes
// left, given that each element takes at least min bytes: a forged length
// never makes a decoder allocate more than its input justifies.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(len(r.b)/min) {
		r.fail(errors.New("list length out of range"))
		return 0
	}
	return int(n)
}
