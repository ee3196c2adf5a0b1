package events

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream defaults.
const (
	DefaultStreamName      = "TOKENRELAY"
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
)

// subjectRoots are the first tokens of every event subject, one per event
// type ("webhook" stands for webhook.<vendor>.<event-type>). The stream
// captures "<root>.>" for each and nothing else: tokenrelay also serves
// request/reply subjects (token.get.<vendor>.<credential>, request.submit),
// and a stream capturing one of those would answer the request with a PubAck.
var subjectRoots = []string{
	TypeTokenRenewed,
	TypeTokenRefreshFailed,
	TypeTokenExpired,
	TypeKeyRotated,
	TypeKeyRevoked,
	"webhook",
	TypeRequestCompleted,
	TypeRequestFailed,
	TypePollingStarted,
	TypePollingStopped,
	TypeSyncPage,
	TypeSyncCompleted,
	TypeSyncFailed,
}

// StreamSubjects lists the subjects the event stream captures under a
// subject prefix ("" in production; tests and tenants sharing one NATS
// server use a prefix ending in "." so their streams do not overlap).
// Request/reply subjects are deliberately absent.
func StreamSubjects(subjectPrefix string) []string {
	subjects := make([]string, len(subjectRoots))
	for i, root := range subjectRoots {
		subjects[i] = subjectPrefix + root + ".>"
	}
	return subjects
}

// StreamConfig declares the event stream. The zero value is the production
// stream.
type StreamConfig struct {
	// Name of the stream. Default DefaultStreamName ("TOKENRELAY").
	Name string
	// SubjectPrefix is put before every event subject. Default "" (none);
	// when set it must end with ".", e.g. "tenant-a.".
	SubjectPrefix string
	// Replicas is the number of stream replicas in a NATS cluster. Default 1.
	Replicas int
	// MaxAge is how long events are kept. Default 7 days.
	MaxAge time.Duration
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id to drop
	// a re-publish of it. Default 2 minutes; at most MaxAge.
	DuplicateWindow time.Duration
	// Storage is the storage backend. Default (zero value) file storage.
	Storage jetstream.StorageType
}

func (c StreamConfig) withDefaults() (StreamConfig, error) {
	if c.Name == "" {
		c.Name = DefaultStreamName
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	switch {
	case c.Replicas < 0:
		return c, fmt.Errorf("events: stream config: Replicas is %d, want at least 1", c.Replicas)
	case c.MaxAge < 0:
		return c, fmt.Errorf("events: stream config: MaxAge is %s, want a positive duration (or 0 for 7 days)", c.MaxAge)
	case c.DuplicateWindow < 0 || c.DuplicateWindow > c.MaxAge:
		return c, fmt.Errorf("events: stream config: DuplicateWindow is %s, want a positive duration no longer than MaxAge (%s)", c.DuplicateWindow, c.MaxAge)
	}
	if err := validateSubjectPrefix(c.SubjectPrefix); err != nil {
		return c, fmt.Errorf("events: stream config: %w", err)
	}
	return c, nil
}

// EnsureStream creates the event stream, or updates it to cfg if it exists
// (so an upgrade that adds an event type extends its subjects). It is safe
// to call from every replica at start-up.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "tokenrelay events (CloudEvents 1.0 JSON; Nats-Msg-Id = event id)",
		Subjects:    StreamSubjects(cfg.SubjectPrefix),
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("events: ensure stream %s: %w", cfg.Name, err)
	}
	return stream, nil
}

// validateSubjectPrefix accepts "" or literal tokens each followed by ".".
func validateSubjectPrefix(p string) error {
	if p == "" {
		return nil
	}
	if !strings.HasSuffix(p, ".") {
		return fmt.Errorf("SubjectPrefix %q must end with \".\"", p)
	}
	if !validTokens(strings.TrimSuffix(p, ".")) {
		return fmt.Errorf("SubjectPrefix %q must be literal subject tokens (no spaces, wildcards or empty tokens)", p)
	}
	return nil
}

// validEventSubject reports whether s is a literal subject the event stream
// captures (without subject prefix): one of the roots followed by at least
// one more token. An entry with any other subject could never be acked, or
// would break the NATS protocol line, so the relay dead-letters it.
func validEventSubject(s string) bool {
	if !validTokens(s) {
		return false
	}
	for _, root := range subjectRoots {
		if strings.HasPrefix(s, root+".") {
			return true
		}
	}
	return false
}

// validTokens reports whether s is one or more non-empty, literal subject
// tokens separated by dots.
func validTokens(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return false
		}
	}
	return true
}
