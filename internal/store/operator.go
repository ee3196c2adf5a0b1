package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/secret"
)

// ErrAlreadyRevoked: the credential is revoked already.
var ErrAlreadyRevoked = errors.New("store: credential is already revoked")

// Revoke marks a credential revoked (class says why, e.g.
// "revoked_by_operator") and writes ev, its key.revoked event, in the same
// step, provided the credential is still at generation gen (else ErrStale:
// read it again and rebuild the event). It leaves the schedule for good; a
// refresh in flight is discarded. Nothing is deleted.
func (s *Store) Revoke(ctx context.Context, id string, gen int64, class, message string, ev events.Envelope) error {
	evArgs, err := eventArgs(ev)
	if err != nil {
		return fmt.Errorf("store: revoke %s: %w", id, err)
	}
	args := append([]any{id, gen, class, secret.Truncate(message, maxErrorLen), ms(s.now())}, evArgs...)
	reply, err := scriptRevoke.Run(ctx, s.rdb, []string{s.credKey(id), s.due, s.outbox}, args...).Slice()
	if err != nil {
		return fmt.Errorf("store: revoke %s: %w", id, err)
	}
	switch status, _ := splitReply(reply); status {
	case replyOK:
		return nil
	case replyRevoked:
		return fmt.Errorf("store: revoke %s: %w", id, ErrAlreadyRevoked)
	default:
		return refusal("revoke", id, status)
	}
}

// Enable puts a credential back in service: active, failures cleared, due
// now. clientID and keys replace the stored ones when given (empty and nil
// keep them), so a credential the vendor refused can be re-enabled with a
// new secret.
func (s *Store) Enable(ctx context.Context, id, clientID string, keys *Keys) error {
	for range maxRebind {
		var sealed, fp, vendor string
		if keys != nil {
			bundle, err := keys.encode()
			if err != nil {
				return fmt.Errorf("store: enable %s: %w", id, err)
			}
			vendors, err := s.vendorsOf(ctx, []string{id})
			if err != nil {
				return fmt.Errorf("store: enable %s: %w", id, err)
			}
			vendor = vendors[0]
			if sealed, err = s.seal(id, vendor, fClientSecret, bundle); err != nil {
				return fmt.Errorf("store: enable %s: %w", id, err)
			}
			fp = bundle.Fingerprint()
		}
		reply, err := scriptEnable.Run(ctx, s.rdb, []string{s.credKey(id), s.due}, id, clientID, sealed, fp, ms(s.now()), vendor).Slice()
		if err != nil {
			return fmt.Errorf("store: enable %s: %w", id, err)
		}
		switch status, _ := splitReply(reply); status {
		case replyOK:
			return nil
		case replyStale: // renamed to another vendor meanwhile: seal again
		default:
			return refusal("enable", id, status)
		}
	}
	return fmt.Errorf("store: enable %s: its vendor kept changing; try again", id)
}
