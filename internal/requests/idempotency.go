package requests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// idemRecord is what an idempotency key holds: the first request's id,
// then also its outcome (an idemOutcome), sealed.
type idemRecord struct {
	ID     string `json:"id"`
	Sealed string `json:"sealed,omitempty"`
}

// idemOutcome is the first request's outcome event under its key.
type idemOutcome struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// sealOutcome returns the idempotency record of r's outcome, sealed and
// bound to r's key, vendor and credential.
func sealOutcome(kr *seal.Keyring, r jobs.Request, o idemOutcome) (string, error) {
	raw, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("requests: encode outcome of %s: %w", r.ID, err)
	}
	sealed, err := kr.Seal(raw, idemAAD(r.Vendor, r.Credential, r.IdempotencyKey))
	if err != nil {
		return "", fmt.Errorf("requests: seal outcome of %s: %w", r.ID, err)
	}
	rec, err := json.Marshal(idemRecord{ID: r.ID, Sealed: sealed})
	if err != nil {
		return "", fmt.Errorf("requests: encode outcome of %s: %w", r.ID, err)
	}
	return string(rec), nil
}

// idempotent claims r's idempotency key for r. The key is r's credential's
// (keys.idempotency): another credential's request with the same key is
// not a duplicate of r. When another request of the credential holds it,
// r is a duplicate: it ends with the first one's outcome (done true), or
// waits for it while the first one runs.
func (h *Handler) idempotent(ctx context.Context, r jobs.Request, g *group) (bool, error) {
	key := h.keys.idempotency(r.Vendor, r.Credential, r.IdempotencyKey)
	mine, _ := json.Marshal(idemRecord{ID: r.ID})
	set, err := h.d.Redis.SetNX(ctx, key, mine, h.d.IdempotencyTTL).Result()
	if err != nil {
		return false, fmt.Errorf("requests: idempotency key of %s: %w", r.ID, err)
	}
	if set {
		return false, nil
	}
	raw, err := h.d.Redis.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return h.idempotent(ctx, r, g) // expired in between
	}
	if err != nil {
		return false, fmt.Errorf("requests: idempotency key of %s: %w", r.ID, err)
	}
	var first idemRecord
	if err := json.Unmarshal(raw, &first); err != nil {
		return false, fmt.Errorf("requests: idempotency key of %s holds %w", r.ID, err)
	}
	if first.ID == r.ID {
		return false, nil
	}
	if first.Sealed == "" {
		// The first one has not ended: look again in a second.
		return true, h.wait(ctx, r, record{refreshed: -1}, &jobs.RetryAt{At: h.d.Clock().Add(time.Second), Reason: "duplicate_in_flight"}, g)
	}
	plain, err := h.d.Keyring.Open(first.Sealed, idemAAD(r.Vendor, r.Credential, r.IdempotencyKey))
	if err != nil {
		return true, fmt.Errorf("requests: outcome under idempotency key of %s: %w", r.ID, err)
	}
	var out idemOutcome
	if err := json.Unmarshal(plain, &out); err != nil {
		return true, fmt.Errorf("requests: outcome under idempotency key of %s: %w", r.ID, err)
	}
	var data map[string]any
	if err := json.Unmarshal(out.Data, &data); err != nil {
		return true, fmt.Errorf("requests: outcome under idempotency key of %s: %w", r.ID, err)
	}
	data["id"], data["duplicate_of"], data["batch"] = r.ID, first.ID, r.Batch
	if r.Batch == "" {
		delete(data, "batch")
	}
	ev, err := newOutboxEvent(ctx, h.d.Keyring, out.Type, r, h.d.Clock(), data)
	if err != nil {
		return true, err
	}
	state := "done"
	if out.Type == events.TypeRequestFailed {
		state = "failed"
	}
	dup := r
	dup.IdempotencyKey = "" // the key keeps the first one's outcome
	if err := h.transition(ctx, dup, record{attempts: -1}, state, ev); err != nil {
		return true, err
	}
	h.d.Metrics.outcome(r.Vendor, OutcomeDuplicate)
	return true, nil
}
