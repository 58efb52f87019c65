package pool

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// rng is a random source safe for concurrent use without a lock. Seeded, it is
// a SplitMix64 generator over an atomic counter (reproducible in tests run on
// one goroutine); unseeded, it uses math/rand/v2's runtime generator, which
// is per-thread.
type rng struct {
	seeded bool
	state  atomic.Uint64
}

func newRNG(seed uint64) *rng {
	r := &rng{seeded: seed != 0}
	r.state.Store(seed)
	return r
}

// Uint64 returns a uniformly distributed 64-bit value.
func (r *rng) Uint64() uint64 {
	if !r.seeded {
		return rand.Uint64()
	}
	return mix64(r.state.Add(0x9e3779b97f4a7c15))
}

// IntN returns a value in [0, n); n must be positive. Multiply-shift leaves a
// bias of at most n/2^64, which is negligible here.
func (r *rng) IntN(n int) int {
	hi, _ := bits.Mul64(r.Uint64(), uint64(n))
	return int(hi)
}

// Float64 returns a value in [0, 1).
func (r *rng) Float64() float64 {
	return float64(r.Uint64()>>11) / (1 << 53)
}

// mix64 is the SplitMix64 finaliser: a bijective, well-mixing hash of x.
func mix64(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
