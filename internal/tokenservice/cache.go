package tokenservice

import (
	"container/list"
	"crypto/rand"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// cache keeps, per (vendor, credential), the last token read from the
// store, so that token.get can still be answered while the store is away.
// The access token is sealed under a key drawn at start and held only by
// this process, so a heap dump or a stray log of an entry shows ciphertext.
// It is bounded (least recently used entries go first) and never answers
// with a token that has expired, that a newer generation is known to have
// replaced, or whose key was revoked after it was read.
type cache struct {
	kr  *seal.Keyring
	max int

	mu      sync.Mutex
	entries map[cacheKey]*list.Element // of *entry
	lru     list.List                  // front: most recently used
}

type cacheKey struct{ vendor, credential string }

// entry is what is known of one credential. A token-less entry is a
// tombstone: it remembers a generation or revocation learned from an event
// so that a read started before the event cannot bring the old token back.
type entry struct {
	key       cacheKey
	sealed    string // "" when there is no token to serve
	tokenType string
	expiresAt time.Time
	gen       int64 // generation of the sealed token
	// trace is the traceparent of the renewal that committed the token
	// (store.Credential.RenewalTrace), "" when it was not sampled.
	trace string
	// knownGen is the highest generation heard of (token.renewed, key.revoked).
	knownGen int64
	// revoked: the credential is revoked (by the store or a key.revoked
	// event that is not a rotation) as of knownGen.
	revoked bool
}

// cached is a token answer taken from the cache.
type cached struct {
	accessToken string
	tokenType   string
	expiresAt   time.Time
	gen         int64
	trace       string
	revoked     bool
}

func newCache(max int) (*cache, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("tokenservice: draw cache key: %w", err)
	}
	kr, err := seal.NewKeyring(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenservice: cache key: %w", err)
	}
	return &cache{kr: kr, max: max, entries: make(map[cacheKey]*list.Element)}, nil
}

// aad binds a sealed token to its credential and generation.
func (k cacheKey) aad(gen int64) []byte {
	return seal.Bind("tokencache", k.vendor, k.credential, strconv.FormatInt(gen, 10))
}

// getLocked returns the entry of k, creating it (and evicting the least
// recently used beyond max) when create is set.
func (c *cache) getLocked(k cacheKey, create bool) *entry {
	if el, ok := c.entries[k]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*entry)
	}
	if !create {
		return nil
	}
	e := &entry{key: k}
	c.entries[k] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*entry).key)
	}
	return e
}

// put records a token read from the store, unless a newer generation is
// already known.
func (c *cache) put(k cacheKey, accessToken, tokenType string, expiresAt time.Time, gen int64, trace string) {
	sealed, err := c.kr.Seal([]byte(accessToken), k.aad(gen))
	if err != nil {
		return // no cache entry is a lost optimisation, not an error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.getLocked(k, true)
	if gen < e.knownGen || (e.revoked && gen <= e.knownGen) || gen < e.gen {
		return
	}
	*e = entry{key: k, sealed: sealed, tokenType: tokenType, expiresAt: expiresAt, gen: gen, trace: trace, knownGen: gen}
}

// putRevoked records that the store says the credential is revoked.
func (c *cache) putRevoked(k cacheKey, gen int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.getLocked(k, true)
	if gen < e.knownGen {
		return
	}
	*e = entry{key: k, knownGen: gen, revoked: true}
}

// drop forgets the token of k (the store no longer has one to serve).
func (c *cache) drop(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.lru.Remove(el)
		delete(c.entries, k)
	}
}

// renewed handles a token.renewed event: a higher generation than the
// cached token's makes it stale. It reports whether k is cached (and so
// worth reading again).
func (c *cache) renewed(k cacheKey, gen int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.getLocked(k, false)
	if e == nil {
		return false
	}
	if gen > e.knownGen {
		e.knownGen = gen
		e.revoked = false // a renewal after a revocation: reconnected
	}
	if gen > e.gen {
		e.sealed = ""
	}
	return true
}

// keyRevoked handles a key.revoked event: the cached token is no longer
// served, and unless the key was revoked by a rotation (the credential goes
// on with its new key) the credential is answered revoked.
func (c *cache) keyRevoked(k cacheKey, gen int64, rotated bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.getLocked(k, !rotated)
	if e == nil {
		return
	}
	e.sealed = ""
	if gen > e.knownGen {
		e.knownGen = gen
	}
	if !rotated {
		e.revoked = true
	}
}

// get returns what the cache can answer for k at now: a token that has not
// expired and is the newest known, or a revocation. ok is false otherwise.
func (c *cache) get(k cacheKey, now time.Time) (cached, bool) {
	c.mu.Lock()
	e := c.getLocked(k, false)
	if e == nil {
		c.mu.Unlock()
		return cached{}, false
	}
	if e.revoked {
		c.mu.Unlock()
		return cached{revoked: true}, true
	}
	if e.sealed == "" || e.gen < e.knownGen || !now.Before(e.expiresAt) {
		c.mu.Unlock()
		return cached{}, false
	}
	got := cached{tokenType: e.tokenType, expiresAt: e.expiresAt, gen: e.gen, trace: e.trace}
	sealed := e.sealed
	c.mu.Unlock()
	plain, err := c.kr.Open(sealed, k.aad(got.gen))
	if err != nil {
		return cached{}, false
	}
	got.accessToken = string(plain)
	return got, true
}

// len is the number of entries, tombstones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
