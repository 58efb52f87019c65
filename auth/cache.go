package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// credKey is the keyed hash (HMAC-SHA256 under a random per-process key) of
// a (user, password) pair. It is what the cache stores instead of the
// password.
type credKey [sha256.Size]byte

// macer computes HMAC-SHA256 under a random per-process key without
// allocating: it builds the two padded blocks once and hashes with
// sha256.Sum256 over stack buffers, so no hash.Hash escapes to the heap.
// (crypto/hmac needs a pooled hash.Hash, and sync.Pool drops items on
// purpose under the race detector, which would make the hot path allocate.)
type macer struct {
	ipad, opad [sha256.BlockSize]byte // key XOR 0x36, key XOR 0x5c
}

// macInputMax is the longest input macer hashes without allocating: a
// domain byte, a length, a user name and a password at their limits.
const macInputMax = 1 + 4 + MaxNameLen + maxPasswordLen

// newMacer returns a macer under a fresh random key.
func newMacer() (*macer, error) {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("reading credential cache key: %w", err)
	}
	return newMacerKey(key[:]), nil
}

// newMacerKey returns a macer under key (at most sha256.BlockSize bytes).
func newMacerKey(key []byte) *macer {
	m := &macer{}
	copy(m.ipad[:], key)
	copy(m.opad[:], key)
	for i := range m.ipad {
		m.ipad[i] ^= 0x36
		m.opad[i] ^= 0x5c
	}
	return m
}

// pair returns the keyed hash of (user, password). The user's length goes
// first so that no two pairs share an input.
func (m *macer) pair(user, password string) credKey {
	return m.sum('u', user, password)
}

// secret returns the keyed hash of one plaintext password, for comparing a
// stored plaintext with a given one in constant time.
func (m *macer) secret(password string) credKey {
	return m.sum('p', "", password)
}

// sum returns HMAC-SHA256(key, domain || len(a) || a || b).
func (m *macer) sum(domain byte, a, b string) credKey {
	var inner [sha256.BlockSize + macInputMax]byte
	msg := 1 + 4 + len(a) + len(b)
	var in []byte
	if msg <= macInputMax {
		in = inner[:0]
	} else {
		in = make([]byte, 0, sha256.BlockSize+msg) // callers bound their input; this is a safety net
	}
	in = append(in, m.ipad[:]...)
	in = append(in, domain)
	in = binary.BigEndian.AppendUint32(in, uint32(len(a)))
	in = append(in, a...)
	in = append(in, b...)
	ih := sha256.Sum256(in)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], m.opad[:])
	copy(outer[sha256.BlockSize:], ih[:])
	return sha256.Sum256(outer[:])
}

// cacheShards is the number of independently locked parts of the cache.
const cacheShards = 32

// credCache remembers verified (user, password) pairs until they expire.
// Lookups take one shard's read lock; nothing global.
//
// An entry is fresh for ttl after it was put; then it is stale, and kept for
// stale more (RedisStore honours stale entries while Redis is unreachable;
// FileStore uses stale = 0).
type credCache struct {
	ttl   time.Duration
	stale time.Duration
	now   func() time.Time
	// gen is the generation of the cache: entries put in an older one are
	// stale. staleAll bumps it when invalidation messages may have been
	// missed.
	gen    atomic.Uint64
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex // guards m
	m  map[credKey]cacheEntry
	_  [40]byte // keep shards on separate cache lines
}

// cacheEntry is one verified pair.
type cacheEntry struct {
	c      *Customer
	gen    uint64 // credCache.gen when put
	fp     uint64 // fingerprint of the stored password (hash) it was verified against
	fresh  int64  // fresh until, unix nanoseconds
	expire int64  // dropped from, unix nanoseconds
}

// cacheState is what get found.
type cacheState int

const (
	cacheMiss cacheState = iota
	cacheFresh
	cacheStale
)

func newCredCache(ttl, stale time.Duration, now func() time.Time) *credCache {
	cc := &credCache{ttl: ttl, stale: stale, now: now}
	for i := range cc.shards {
		cc.shards[i].m = make(map[credKey]cacheEntry)
	}
	return cc
}

func (cc *credCache) shard(k credKey) *cacheShard {
	return &cc.shards[k[0]%cacheShards]
}

// get returns the entry cached under k and whether it is fresh or stale at
// now. It does not allocate.
func (cc *credCache) get(k credKey, now time.Time) (cacheEntry, cacheState) {
	s := cc.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	n := now.UnixNano()
	switch {
	case !ok || n >= e.expire:
		return cacheEntry{}, cacheMiss
	case n >= e.fresh || e.gen != cc.gen.Load():
		return e, cacheStale
	}
	return e, cacheFresh
}

// put caches c (verified against a password with fingerprint fp) under k
// and drops the shard's expired entries. It runs after a slow
// verification, so the sweep costs nothing noticeable.
func (cc *credCache) put(k credKey, c *Customer, fp uint64) {
	now := cc.now().UnixNano()
	s := cc.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, e := range s.m {
		if now >= e.expire {
			delete(s.m, key)
		}
	}
	s.m[k] = cacheEntry{c: c, gen: cc.gen.Load(), fp: fp, fresh: now + int64(cc.ttl), expire: now + int64(cc.ttl+cc.stale)}
}

// dropUser deletes every entry of user.
func (cc *credCache) dropUser(user string) {
	for i := range cc.shards {
		s := &cc.shards[i]
		s.mu.Lock()
		for key, e := range s.m {
			if e.c.User == user {
				delete(s.m, key)
			}
		}
		s.mu.Unlock()
	}
}

// staleAll makes every entry stale (kept for fail-static, but checked with
// the store before it is used again).
func (cc *credCache) staleAll() {
	cc.gen.Add(1)
}

// len returns the number of entries, expired or not.
func (cc *credCache) len() int {
	n := 0
	for i := range cc.shards {
		s := &cc.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// flights lets concurrent cache misses for the same pair share one slow
// verification, and bounds how many verifications run at once.
type flights struct {
	sem chan struct{} // one token per running verification

	mu sync.Mutex // guards m
	m  map[credKey]*flight
}

type flight struct {
	done      chan struct{} // closed when the fields below are final
	c         *Customer
	err       error
	abandoned bool // the check never ran: its caller's ctx ended first
}

// errCheckAborted is what waiters see if a check panicked.
var errCheckAborted = errors.New("password check aborted")

func newFlights(max int) *flights {
	return &flights{sem: make(chan struct{}, max), m: make(map[credKey]*flight)}
}

// do runs verify for k, or waits for the run already under way for k, and
// returns its result. It gives up when ctx is done.
func (f *flights) do(ctx context.Context, k credKey, verify func() (*Customer, error)) (*Customer, error) {
	f.mu.Lock()
	for {
		fl, ok := f.m[k]
		if !ok {
			break
		}
		f.mu.Unlock()
		select {
		case <-fl.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for password check: %w", ctx.Err())
		}
		if !fl.abandoned {
			return fl.c, fl.err
		}
		// The caller that ran the check gave up before it started; try again.
		f.mu.Lock()
	}
	fl := &flight{done: make(chan struct{}), err: errCheckAborted}
	f.m[k] = fl
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.m, k)
		f.mu.Unlock()
		close(fl.done)
	}()
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		fl.abandoned = true
		return nil, fmt.Errorf("waiting for password check: %w", ctx.Err())
	}
	defer func() { <-f.sem }()
	fl.c, fl.err = verify()
	return fl.c, fl.err
}
