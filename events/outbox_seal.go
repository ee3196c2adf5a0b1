package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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

// The event field of an outbox entry is one of three forms, told apart by
// its first byte: JSON ('{'), sealed in seal's binary form (0x01, what
// SealOutboxEntry writes), or sealed in seal's text form ("v1.", what it
// wrote before: entries written so are still read).
const (
	sealedTextPrefix  = "v1."
	sealedBinaryFirst = seal.BinaryVersion
)

// isSealed reports whether an outbox entry's event field is a sealed value
// rather than JSON.
func isSealed(event string) bool {
	return strings.HasPrefix(event, sealedTextPrefix) || len(event) > 0 && event[0] == sealedBinaryFirst
}

// SealOutboxEntry is EncodeOutboxEntry with the event field sealed under
// kr's current key, bound to the event's id and subject, in seal's binary
// form (bytes: no base64 of a vendor's whole answer to write, keep in
// Redis and read back). The event's JSON is written where it is sealed.
func SealOutboxEntry(kr *seal.Keyring, env Envelope) ([]any, error) {
	return sealOutboxEntry(kr, env, false)
}

// SealNew builds the event New builds, carrying ctx's trace context (as
// Traced), and returns it with its sealed outbox entry (SealOutboxEntry's):
// the data is encoded once, here, and not walked again to check it, where a
// request.completed quotes the vendor's whole answer.
func SealNew(ctx context.Context, kr *seal.Keyring, eventType, vendor, credential string, at time.Time, data any) (Envelope, []any, error) {
	env, err := New(eventType, vendor, credential, at, data)
	if err != nil {
		return Envelope{}, nil, err
	}
	env = env.Traced(ctx)
	entry, err := sealOutboxEntry(kr, env, true)
	if err != nil {
		return Envelope{}, nil, err
	}
	return env, entry, nil
}

// sealOutboxEntry is SealOutboxEntry; dataEncoded as for appendOutboxEvent.
func sealOutboxEntry(kr *seal.Keyring, env Envelope, dataEncoded bool) ([]any, error) {
	if kr == nil {
		return nil, errors.New("events: sealing an outbox entry needs a keyring")
	}
	buf := make([]byte, seal.BinaryHeaderLen, seal.BinaryHeaderLen+envelopeOverhead+len(env.Data)+seal.BinaryTagLen)
	buf, err := appendOutboxEvent(buf, env, dataEncoded)
	if err != nil {
		return nil, err
	}
	sealed, err := kr.SealInPlace(buf, outboxAAD(env.ID, env.Subject))
	if err != nil {
		return nil, fmt.Errorf("events: seal event %s: %w", env.ID, err)
	}
	return []any{OutboxFieldID, env.ID, OutboxFieldSubject, env.Subject, OutboxFieldEvent, sealed}, nil
}

// OpenOutboxEvent returns the envelope JSON of an outbox entry's event
// field: opened when it is sealed, in either form (kr nil:
// ErrSealedNoKeyring), as it is otherwise. Errors never quote the entry.
func OpenOutboxEvent(kr *seal.Keyring, id, subject, event string) ([]byte, error) {
	if !isSealed(event) {
		return []byte(event), nil
	}
	if kr == nil {
		return nil, ErrSealedNoKeyring
	}
	var raw []byte
	var err error
	if event[0] == sealedBinaryFirst {
		raw, err = kr.OpenBinary([]byte(event), outboxAAD(id, subject))
	} else {
		raw, err = kr.Open(event, outboxAAD(id, subject))
	}
	if err != nil {
		return nil, fmt.Errorf("events: open outbox event %s: %w", id, err)
	}
	return raw, nil
}
