package events

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// Sealed outbox entries. An event that may carry patient data (a
// request.completed with the vendor's answer inline, a request.failed
// quoting it) is written to the outbox with its event field sealed by the
// master key (package seal), bound to the entry's event id and subject: a
// sealed event moved to another entry, or onto another credential's
// subject, does not open. The Relay opens it just before publishing, so the
// plaintext never rests in Redis. Credential lifecycle events (no patient
// data) are written in clear; the relay takes both.

// ErrSealedNoKeyring: an outbox entry is sealed and the relay has no
// keyring (RelayOptions.Keyring) to open it.
var ErrSealedNoKeyring = errors.New("events: sealed outbox entry and no keyring to open it")

// outboxAAD is the associated data of a sealed outbox event.
func outboxAAD(id, subject string) []byte {
	return seal.Bind("outbox", id, subject)
}

// isSealed reports whether an outbox entry's event field is a sealed value
// rather than JSON (which starts with '{').
func isSealed(event string) bool { return strings.HasPrefix(event, "v1.") }

// SealOutboxEntry is EncodeOutboxEntry with the event field sealed under
// kr's current key, bound to the event's id and subject.
func SealOutboxEntry(kr *seal.Keyring, env Envelope) ([]any, error) {
	if kr == nil {
		return nil, errors.New("events: sealing an outbox entry needs a keyring")
	}
	raw, err := marshalOutboxEvent(env)
	if err != nil {
		return nil, err
	}
	sealed, err := kr.Seal(raw, outboxAAD(env.ID, env.Subject))
	if err != nil {
		return nil, fmt.Errorf("events: seal event %s: %w", env.ID, err)
	}
	return []any{OutboxFieldID, env.ID, OutboxFieldSubject, env.Subject, OutboxFieldEvent, sealed}, nil
}

// OpenOutboxEvent returns the envelope JSON of an outbox entry's event
// field: opened when it is sealed (kr nil: ErrSealedNoKeyring), as it is
// otherwise. Errors never quote the entry.
func OpenOutboxEvent(kr *seal.Keyring, id, subject, event string) ([]byte, error) {
	if !isSealed(event) {
		return []byte(event), nil
	}
	if kr == nil {
		return nil, ErrSealedNoKeyring
	}
	raw, err := kr.Open(event, outboxAAD(id, subject))
	if err != nil {
		return nil, fmt.Errorf("events: open outbox event %s: %w", id, err)
	}
	return raw, nil
}
