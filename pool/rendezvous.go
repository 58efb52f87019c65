package pool

import "net/netip"

// Rendezvous (highest random weight) hashing: a session key goes to the
// candidate with the highest score(key, candidate). The score depends only on
// the key and that candidate, so when a candidate joins or leaves only the keys
// whose winner it is (or becomes) move. The hashes are fixed functions (FNV-1a
// and SplitMix64), so every gateway computes the same winner for the same set.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashString is FNV-1a 64 of s.
func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// hashAddr is FNV-1a 64 of the address's 16-byte form.
func hashAddr(a netip.Addr) uint64 {
	b := a.As16()
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// hrwScore is the weight of a candidate (by the hash of its identity) for a
// key (by its hash).
func hrwScore(key, candidate uint64) uint64 {
	return mix64(key ^ mix64(candidate))
}

// sessionKey is the store key of a sticky session.
func sessionKey(customer, session string) string {
	return customer + "\x00" + session
}
