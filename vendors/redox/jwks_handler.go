package redox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenrelay/tokenrelay/secret"
)

// SigningKey is a private key a credential signs its assertions with, or,
// when PublicJWK is set, only the public JWK of one (a key being rotated in
// or out, published without its private half at hand).
type SigningKey struct {
	PrivateKey secret.Value
	KeyID      string
	PublicJWK  json.RawMessage
}

// ErrNoSigningKeys says a credential has no key to publish (unknown, not a
// Redox credential, or signing with a shared secret).
var ErrNoSigningKeys = errors.New("redox: no signing keys")

// KeySource returns the signing keys of one credential of one vendor
// instance: the current key, and during a rotation the old one too.
type KeySource func(ctx context.Context, vendor, credential string) ([]SigningKey, error)

// validName is what vendor names and credential ids look like (config's
// id pattern); nothing else is looked up.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// JWKSHandler serves GET .../{vendor}/{credential}: the JWK Set of the
// public halves of the credential's signing keys, for the JWKS URL
// registered with Redox. It is public data; nothing private is ever in it.
// A credential without keys is 404. Each request reads the keys (opening
// the sealed private key); a public server uses CachedJWKSHandler.
func JWKSHandler(keys KeySource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vendor, cred := r.PathValue("vendor"), r.PathValue("credential")
		if !validName.MatchString(vendor) || !validName.MatchString(cred) {
			http.Error(w, "no such credential", http.StatusNotFound)
			return
		}
		renderJWKS(r.Context(), keys, vendor, cred).write(w)
	})
}

// JWKSCacheOptions tune CachedJWKSHandler. Zero values take the defaults.
type JWKSCacheOptions struct {
	// TTL is how long a rendered JWK Set (or a 404) is served before the
	// keys are read again (5s). A rotation's new key so shows within TTL
	// of being created (the rotation waits for Redox to accept it), and
	// an old key stays TTL longer than the rotation keeps it (it keeps it
	// two minutes past the switch for caches like this one).
	TTL time.Duration
	// MaxEntries bounds the credentials cached at once (10,000); past it,
	// expired entries are dropped, and if none is, the answer is not
	// cached (the reads are still shared by concurrent requests).
	MaxEntries int
	// Now is the clock (time.Now).
	Now func() time.Time
}

// CachedJWKSHandler is JWKSHandler with each credential's answer (its
// rendered JWK Set, or its 404) cached for o.TTL, and concurrent requests
// for the same credential sharing one read: a flood of requests opens a
// credential's sealed key at most once per TTL. A failure to read the
// keys (503) is not cached.
func CachedJWKSHandler(keys KeySource, o JWKSCacheOptions) http.Handler {
	if o.TTL <= 0 {
		o.TTL = 5 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &jwksCache{o: o, entries: map[string]cachedJWKS{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vendor, cred := r.PathValue("vendor"), r.PathValue("credential")
		if !validName.MatchString(vendor) || !validName.MatchString(cred) {
			http.Error(w, "no such credential", http.StatusNotFound)
			return
		}
		key := vendor + "/" + cred
		if a, ok := c.get(key); ok {
			a.write(w)
			return
		}
		v, _, _ := c.flight.Do(key, func() (any, error) {
			if a, ok := c.get(key); ok {
				return a, nil
			}
			// Not the request's context: the read is shared, and a client
			// hanging up must not fail the others.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			defer cancel()
			a := renderJWKS(ctx, keys, vendor, cred)
			if a.status != http.StatusServiceUnavailable {
				c.put(key, a)
			}
			return a, nil
		})
		v.(jwksAnswer).write(w)
	})
}

type jwksCache struct {
	o       JWKSCacheOptions
	flight  singleflight.Group
	mu      sync.Mutex
	entries map[string]cachedJWKS
}

type cachedJWKS struct {
	answer  jwksAnswer
	expires time.Time
}

func (c *jwksCache) get(key string) (jwksAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.o.Now().Before(e.expires) {
		return jwksAnswer{}, false
	}
	return e.answer, true
}

func (c *jwksCache) put(key string, a jwksAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.o.MaxEntries {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.o.MaxEntries {
			return
		}
	}
	c.entries[key] = cachedJWKS{answer: a, expires: now.Add(c.o.TTL)}
}

// jwksAnswer is a rendered answer: a JWK Set, or an error's status and
// text.
type jwksAnswer struct {
	status int
	body   []byte
}

func (a jwksAnswer) write(w http.ResponseWriter) {
	if a.status != http.StatusOK {
		http.Error(w, string(a.body), a.status)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(a.body)
}

// renderJWKS reads a credential's keys and renders their JWK Set.
func renderJWKS(ctx context.Context, keys KeySource, vendor, cred string) jwksAnswer {
	signing, err := keys(ctx, vendor, cred)
	switch {
	case errors.Is(err, ErrNoSigningKeys) || (err == nil && len(signing) == 0):
		return jwksAnswer{http.StatusNotFound, []byte("no signing keys for " + vendor + "/" + cred)}
	case err != nil:
		return jwksAnswer{http.StatusServiceUnavailable, []byte("signing keys unavailable; try again")}
	}
	pubs := make([]json.RawMessage, 0, len(signing))
	for _, k := range signing {
		if len(k.PublicJWK) > 0 {
			pubs = append(pubs, k.PublicJWK)
			continue
		}
		jwk, err := PublicJWK(k.PrivateKey, k.KeyID)
		if err != nil {
			return jwksAnswer{http.StatusInternalServerError, []byte("a signing key cannot be published: " + err.Error())}
		}
		pubs = append(pubs, jwk)
	}
	doc, err := JWKS(pubs...)
	if err != nil {
		return jwksAnswer{http.StatusInternalServerError, []byte(err.Error())}
	}
	return jwksAnswer{http.StatusOK, doc}
}
