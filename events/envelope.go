// Package events knows tokenrelay's events: the CloudEvents 1.0 envelope,
// the subjects they are published on, the JetStream stream that holds them,
// the Redis outbox a state change writes its event to atomically, and the
// relay that moves the outbox to JetStream. Every event reaches JetStream
// the same way (publish.go): its JSON as MarshalEnvelope writes it, its id
// doubling as its Nats-Msg-Id, so a re-publish is deduplicated; producers
// that cannot go through the outbox (the webhook receiver, the poller) call
// Publish. It never imports jobs or vendors.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// Event types. A type, once shipped, is never renamed.
const (
	TypeTokenRenewed       = "token.renewed"
	TypeTokenRefreshFailed = "token.refresh_failed"
	TypeTokenExpired       = "token.expired"
	TypeKeyRotated         = "key.rotated"
	TypeKeyRevoked         = "key.revoked"
	TypeWebhookReceived    = "webhook.received"
	TypeRequestCompleted   = "request.completed"
	TypeRequestFailed      = "request.failed"
	// TypePollingStarted and TypePollingStopped mark a vendor resource's
	// change of mode between webhooks and polling, on
	// "<type>.<vendor>.<resource>".
	TypePollingStarted = "polling.started"
	TypePollingStopped = "polling.stopped"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// Envelope is a CloudEvents 1.0 event in its JSON format.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	// TraceParent and TraceState are the CloudEvents distributed-tracing
	// extension: the W3C trace context of the work that produced the event
	// (a renewal, a request, a webhook), set when tracing is on, so that a
	// consumer's span can link to it. The relay also sends them as the NATS
	// message's traceparent/tracestate headers.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// Traced returns e carrying ctx's trace context (unchanged when ctx holds
// no span).
func (e Envelope) Traced(ctx context.Context) Envelope {
	c := tracing.Inject(ctx)
	e.TraceParent, e.TraceState = c.TraceParent, c.TraceState
	return e
}

// Trace is the trace context e carries (the zero Carrier when none).
func (e Envelope) Trace() tracing.Carrier {
	return tracing.Carrier{TraceParent: e.TraceParent, TraceState: e.TraceState}
}

// TraceContext returns ctx carrying the span that produced e as its remote
// parent (ctx itself when e carries none).
func (e Envelope) TraceContext(ctx context.Context) context.Context {
	return e.Trace().Extract(ctx)
}

// NATSSubject is the NATS subject an event of this type about one
// credential is published on: "<type>.<vendor>.<credential>".
func NATSSubject(eventType, vendor, credential string) string {
	return eventType + "." + vendor + "." + credential
}

// New builds an envelope with a fresh id for an event about a credential.
// data is marshalled to JSON; it must never hold a secret (secret.Value
// marshals to its fingerprint, so a stray one cannot leak).
func New(eventType, vendor, credential string, at time.Time, data any) (Envelope, error) {
	raw, err := marshalData(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("events: encode %s data: %w", eventType, err)
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              uuid.NewString(),
		Source:          "tokenrelay/" + vendor,
		Type:            eventType,
		Subject:         NATSSubject(eventType, vendor, credential),
		Time:            at.UTC(),
		DataContentType: "application/json",
		Data:            raw,
	}, nil
}

// Validate reports what is missing or wrong in an envelope.
func (e Envelope) Validate() error {
	if err := e.validateAttributes(); err != nil {
		return err
	}
	if !validJSON(e.Data) {
		return fmt.Errorf("events: data is not JSON")
	}
	return nil
}

// validateAttributes is Validate but for the data.
func (e Envelope) validateAttributes() error {
	var missing []string
	for _, f := range [...]struct{ name, value string }{
		{"specversion", e.SpecVersion}, {"id", e.ID}, {"source", e.Source}, {"type", e.Type},
		{"subject", e.Subject}, {"datacontenttype", e.DataContentType},
	} {
		if f.value == "" {
			missing = append(missing, f.name) // in the order of the spec's attributes
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("events: envelope lacks %s", strings.Join(missing, ", "))
	}
	if e.SpecVersion != SpecVersion {
		return fmt.Errorf("events: specversion %q, want %q", e.SpecVersion, SpecVersion)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("events: envelope lacks time")
	}
	return nil
}

// TokenRenewed is the data of a token.renewed event.
type TokenRenewed struct {
	Vendor     string    `json:"vendor"`
	Credential string    `json:"credential"`
	Generation int64     `json:"generation"`
	IssuedAt   time.Time `json:"issued_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Fingerprint identifies the new token without revealing it.
	Fingerprint string `json:"token_fingerprint"`
	// Recovered is true when this renewal ends a run of failures.
	Recovered bool `json:"recovered,omitempty"`
	// PreviousExpiresAt is when the token this renewal replaces would have
	// expired (absent on the first renewal): the lead time of the renewal
	// is PreviousExpiresAt minus the event's time.
	PreviousExpiresAt time.Time `json:"previous_expires_at,omitzero"`
}

// TokenRefreshFailed is the data of a token.refresh_failed event.
type TokenRefreshFailed struct {
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	Generation int64  `json:"generation"`
	// Class is the error class (vendors.Class*), Message a short
	// secret-free description.
	Class   string `json:"error_class"`
	Message string `json:"message"`
	Attempt int    `json:"attempt"`
	// State is the credential's state after the failure: failing or expired.
	State     string    `json:"state"`
	RetryAt   time.Time `json:"retry_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// TokenExpired is the data of a token.expired event: the current token
// expired before a refresh succeeded. Refreshes go on.
type TokenExpired struct {
	Vendor     string    `json:"vendor"`
	Credential string    `json:"credential"`
	Generation int64     `json:"generation"`
	ExpiredAt  time.Time `json:"expired_at"`
}

// Reasons a key is revoked.
const (
	ReasonRevokedByVendor   = "revoked_by_vendor"
	ReasonRevokedByOperator = "revoked_by_operator"
	ReasonRotated           = "rotated"
)

// KeyRevoked is the data of a key.revoked event.
type KeyRevoked struct {
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	Generation int64  `json:"generation"`
	Reason     string `json:"reason"`
	// KeyFingerprint identifies the revoked key (client id or API key).
	KeyFingerprint string `json:"key_fingerprint"`
	Message        string `json:"message,omitempty"`
}

// KeyRotated is the data of a key.rotated event: the credential switched
// from one key to another (the old one is revoked next, with its own
// key.revoked event, reason rotated). Fingerprints only, never the keys.
type KeyRotated struct {
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	// Rotation names the rotation that made the switch.
	Rotation          string `json:"rotation"`
	OldKeyFingerprint string `json:"old_key_fingerprint"`
	NewKeyFingerprint string `json:"new_key_fingerprint"`
}

// WebhookReceived is the data of a webhook.received event: one genuine
// delivery, kept whole so that it can be replayed. Headers holds only those
// that matter to a consumer or a replay (ids, timestamps, content type,
// event type), never a signature or a verification token.
type WebhookReceived struct {
	Vendor string `json:"vendor"`
	// EventType is the vendor's event type, as in the subject.
	EventType string `json:"event_type"`
	// DeliveryID is what redeliveries are recognised by (webhook-id, FHIR
	// subscription id and event number, or a hash of the body).
	DeliveryID string            `json:"delivery_id"`
	ReceivedAt time.Time         `json:"received_at"`
	Headers    map[string]string `json:"headers,omitempty"`
	// Body is the raw body as received (base64 in JSON).
	Body []byte `json:"body"`
}

// PollingModeChanged is the data of polling.started and polling.stopped.
type PollingModeChanged struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	// Reason says why: no_webhooks (the vendor accepts none), silent
	// (no delivery or heartbeat for longer than silent_after), or
	// webhooks_flowing (deliveries came again).
	Reason string `json:"reason"`
	// LastDelivery is the last delivery or heartbeat seen, if any.
	LastDelivery time.Time `json:"last_delivery,omitzero"`
	At           time.Time `json:"at"`
}
