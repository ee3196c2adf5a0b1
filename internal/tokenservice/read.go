package tokenservice

import (
	"context"
	"errors"

	"github.com/tokenrelay/tokenrelay/internal/store"
)

// flight is one read of the store, shared by the requests for its
// credential that arrive while it runs.
type flight struct {
	done chan struct{} // closed when cred and err are set
	cred store.Credential
	err  error
}

// read joins the read of k in flight or starts one. The read is bounded by
// Options.ReadTimeout, not by the requests waiting on it, and records what
// it finds in the cache.
func (h *handler) read(k cacheKey) *flight {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.flights[k]; ok {
		return f
	}
	f := &flight{done: make(chan struct{})}
	h.flights[k] = f
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.ReadTimeout)
		defer cancel()
		f.cred, f.err = h.opts.Reader.CurrentToken(ctx, k.credential)
		failed := f.err != nil && !errors.Is(f.err, store.ErrNotFound)
		h.storeDown.Store(failed)
		if failed {
			h.opts.Logger.Warn().Err(f.err).Str("vendor", k.vendor).Str("credential", k.credential).Msg("token request: read credential")
		}
		h.remember(k, f.cred, f.err)
		h.mu.Lock()
		delete(h.flights, k)
		h.mu.Unlock()
		close(f.done)
	}()
	return f
}

// remember records the outcome of a store read in the cache.
func (h *handler) remember(k cacheKey, cred store.Credential, err error) {
	switch {
	case h.cache == nil:
	case errors.Is(err, store.ErrNotFound):
		h.cache.drop(k)
	case err != nil, cred.Vendor != k.vendor:
	case cred.State == store.StateRevoked:
		h.cache.putRevoked(k, cred.Generation)
	case cred.Generation == 0 || cred.Token.AccessToken.IsZero() || cred.State == store.StateExpired:
		h.cache.drop(k)
	default:
		h.cache.put(k, cred.Token.AccessToken.Reveal(), cred.Token.TokenType, cred.Token.ExpiresAt, cred.Generation, cred.RenewalTrace)
	}
}
