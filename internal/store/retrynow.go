package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// retryNowLease is how long RetryNow holds its claim at most; it gives it
// back at once, so the lease only matters if it dies in between.
const retryNowLease = 30 * time.Second

// RetryNow makes a credential due for a refresh at once, for an operator,
// with the claim protocol the workers use: it takes the claim of the
// current generation under an owner of its own, then releases it due now
// (Release restores the state the credential had). If a worker holds the
// claim, that worker is refreshing it already: RetryNow changes nothing
// and returns a *BusyError. ErrNotFound if there is no such credential.
func (s *Store) RetryNow(ctx context.Context, id string) error {
	c, err := s.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("store: retry %s now: %w", id, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	owner := "operator-retry-" + hex.EncodeToString(b)
	if _, err := s.Claim(ctx, id, c.Generation, owner, retryNowLease); err != nil {
		return fmt.Errorf("store: retry %s now: %w", id, err)
	}
	if err := s.Release(ctx, id, owner, time.Time{}); err != nil {
		return fmt.Errorf("store: retry %s now: %w", id, err)
	}
	return nil
}
