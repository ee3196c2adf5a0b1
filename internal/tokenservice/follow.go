package tokenservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenrelay/tokenrelay/events"
)

// follow subscribes to the token.renewed and key.revoked events (a plain
// subscription sees what is published to the stream), which keep the
// cache from serving a token that has been replaced or revoked.
func (h *handler) follow(nc *nats.Conn) ([]*nats.Subscription, error) {
	if h.cache == nil {
		return nil, nil
	}
	var subs []*nats.Subscription
	for _, typ := range []string{events.TypeTokenRenewed, events.TypeKeyRevoked} {
		sub, err := nc.Subscribe(h.opts.SubjectPrefix+typ+".>", h.onEvent)
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, fmt.Errorf("tokenservice: subscribe to %s: %w", typ, err)
		}
		subs = append(subs, sub)
	}
	// A NATS user not allowed these subjects (a deployment's permissions
	// from before the cache) would leave the cache deaf to renewals and
	// revocations: then there is no cache, and an error log says why. The
	// server refuses a subscription before it answers the flush.
	if err := nc.FlushTimeout(2 * time.Second); err == nil {
		if last := nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) &&
			(strings.Contains(last.Error(), events.TypeTokenRenewed) || strings.Contains(last.Error(), events.TypeKeyRevoked)) {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			h.opts.Logger.Error().Err(last).Msg("token service: no token cache, the NATS user may not subscribe to token.renewed.> and key.revoked.>")
			h.cache = nil
			return nil, nil
		}
	}
	return subs, nil
}

// onEvent applies a token.renewed or key.revoked event to the cache. After
// a renewal of a cached credential the store is read again, so the cache
// holds the new token before an outage needs it.
func (h *handler) onEvent(m *nats.Msg) {
	var env events.Envelope
	if err := json.Unmarshal(m.Data, &env); err != nil {
		return
	}
	var data struct {
		Vendor     string `json:"vendor"`
		Credential string `json:"credential"`
		Generation int64  `json:"generation"`
		Reason     string `json:"reason"`
	}
	if err := json.Unmarshal(env.Data, &data); err != nil || data.Vendor == "" || data.Credential == "" {
		return
	}
	k := cacheKey{data.Vendor, data.Credential}
	switch env.Type {
	case events.TypeTokenRenewed:
		if h.cache.renewed(k, data.Generation) {
			h.read(k)
		}
	case events.TypeKeyRevoked:
		h.cache.keyRevoked(k, data.Generation, data.Reason == events.ReasonRotated)
	}
}
