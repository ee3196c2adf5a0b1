package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/webhooks/fhirnotify"
	"github.com/tokenrelay/tokenrelay/internal/webhooks/verify"
)

// Fetch is one request a webhook or a poll makes the pipeline do: a request
// job through the vendor's shared rate budget, whose result is published
// as usual (request.completed / request.failed).
type Fetch struct {
	Vendor, Credential string
	Method, Path       string
	Query              url.Values
	// Batch groups the fetches of one vendor's webhooks or polls.
	Batch string
	// IdempotencyKey makes a re-enqueued fetch (a redelivery, a retried
	// poll) one request.
	IdempotencyKey string
}

// Fetcher enqueues fetches. It returns once the fetch is durably queued.
type Fetcher interface {
	Fetch(ctx context.Context, f Fetch) error
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, f Fetch) error

// Fetch implements Fetcher.
func (fn FetcherFunc) Fetch(ctx context.Context, f Fetch) error { return fn(ctx, f) }

// Deps are what a Receiver needs. Zero values take the defaults given.
type Deps struct {
	// Vendors are the vendors whose webhooks are accepted, by name.
	Vendors map[string]Vendor
	// JetStream stores the events. Required.
	JetStream events.Publisher
	// Connected, if set, says whether NATS is connected; while it is not,
	// deliveries get 503 at once instead of waiting for PublishTimeout.
	Connected func() bool
	// Redis holds the dedup ids, liveness and event numbers. Required.
	Redis redis.UniversalClient
	// KeyPrefix starts every Redis key (config redis.prefix).
	KeyPrefix string
	// SubjectPrefix starts every subject (config nats.subject_prefix).
	SubjectPrefix string
	// Fetcher enqueues the fetches id-only notifications and gaps need.
	// Default: none (such notifications are relayed without a fetch, and a
	// warning is logged).
	Fetcher Fetcher
	// PublishTimeout bounds the wait for a PubAck. Default 5s.
	PublishTimeout time.Duration
	// Clock is the time. Default time.Now.
	Clock func() time.Time
	// Logger gets a line per refused delivery (and accepted ones at debug
	// level), never with a secret or the body.
	Logger zerolog.Logger
	// Metrics, if set, counts deliveries by outcome.
	Metrics *Metrics
}

// Receiver is the http.Handler of POST (and GET) /webhooks/{vendor}.
type Receiver struct {
	d       Deps
	state   *state
	checker *checker
	marker  *marker

	closeOnce sync.Once
}

var _ http.Handler = (*Receiver)(nil)

// NewReceiver makes a Receiver.
func NewReceiver(d Deps) (*Receiver, error) {
	if d.JetStream == nil || d.Redis == nil {
		return nil, errors.New("webhooks: receiver needs JetStream and Redis")
	}
	if d.PublishTimeout <= 0 {
		d.PublishTimeout = 5 * time.Second
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	for name, v := range d.Vendors {
		if v.Verifier == nil {
			return nil, fmt.Errorf("webhooks: vendor %s has no verifier", name)
		}
		v.Name = name
		v.setDefaults()
		d.Vendors[name] = v
	}
	st := newState(d.Redis, d.KeyPrefix)
	return &Receiver{d: d, state: st, checker: newChecker(st), marker: newMarker(st, func(err error) {
		d.Logger.Warn().Err(err).Msg("webhooks relayed but not marked; a redelivery after JetStream's duplicate window would be relayed again")
	})}, nil
}

// Close finishes remembering the deliveries relayed so far. Call it after
// the HTTP server stops.
func (rc *Receiver) Close() {
	rc.closeOnce.Do(func() {
		rc.marker.close()
		rc.checker.close()
	})
}

// outcome is how one delivery ended: its HTTP answer, metric and log.
type outcome struct {
	status  int
	label   string
	message string
	err     error
	// body, if set, is the answer's body instead of message (a challenge).
	body string
	// retryAfter, if set, is sent as Retry-After seconds.
	retryAfter int
}

// ServeHTTP implements http.Handler. Mount it on "/webhooks/{vendor}".
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name := r.PathValue("vendor")
	v, ok := rc.d.Vendors[name]
	var o outcome
	label := name
	if !ok {
		label = unknownVendorLabel
	}
	ctx, span := traceReceive(r, label)
	defer func() { endReceive(span, o) }()
	switch {
	case !ok:
		o = outcome{status: http.StatusNotFound, label: OutcomeUnknownVendor, message: "no webhooks are accepted for this vendor"}
	case r.Method == http.MethodGet:
		o = rc.handshakeQuery(v, r.URL.Query())
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", "GET, POST")
		o = outcome{status: http.StatusMethodNotAllowed, label: OutcomeMalformed, message: "use POST"}
	default:
		o = rc.receive(ctx, v, w, r)
	}
	rc.answer(w, o)
	rc.d.Metrics.delivery(label, o.label, time.Since(start).Seconds())
	rc.logOutcome(label, o, time.Since(start))
}

func (rc *Receiver) answer(w http.ResponseWriter, o outcome) {
	if o.retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(o.retryAfter))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(o.status)
	body := o.body
	if body == "" {
		body = o.message + "\n"
	}
	_, _ = io.WriteString(w, body)
}

func (rc *Receiver) logOutcome(vendor string, o outcome, took time.Duration) {
	ev := rc.d.Logger.Debug()
	switch {
	case o.label == OutcomeThrottled:
		// Expected under a flood, and counted: not an error of ours.
		ev = rc.d.Logger.Warn()
	case o.status >= 500:
		ev = rc.d.Logger.Error()
	case o.status >= 400:
		ev = rc.d.Logger.Warn()
	}
	ev = ev.Str("vendor", vendor).Str("outcome", o.label).Int("status", o.status).Dur("took", took)
	if o.err != nil {
		ev = ev.AnErr("error", o.err) // errors here never hold a secret or the body
	}
	ev.Msg(o.message)
}

// receive handles one POST.
func (rc *Receiver) receive(ctx context.Context, v Vendor, w http.ResponseWriter, r *http.Request) outcome {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, v.MaxBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return outcome{status: http.StatusRequestEntityTooLarge, label: OutcomeTooLarge,
				message: fmt.Sprintf("body larger than %d bytes", v.MaxBody)}
		}
		return outcome{status: http.StatusBadRequest, label: OutcomeMalformed, message: "body could not be read", err: err}
	}
	now := rc.d.Clock()

	if v.Handshake != nil {
		if o, ok := rc.handshakeBody(v, body); ok {
			return o
		}
	}
	vspan := traceVerify(ctx)
	err = v.Verifier.Verify(r.Header, body, now)
	endVerify(vspan, err)
	if err != nil {
		switch {
		case errors.Is(err, verify.ErrStale):
			return outcome{status: http.StatusUnauthorized, label: OutcomeStale,
				message: "webhook-timestamp is too far from now (replayed, or the clocks disagree)"}
		case errors.Is(err, verify.ErrMissingSignature):
			return outcome{status: http.StatusUnauthorized, label: OutcomeBadSignature, message: "signature missing"}
		default:
			return outcome{status: http.StatusUnauthorized, label: OutcomeBadSignature, message: "signature does not match"}
		}
	}
	d, ok := describe(body)
	if !ok {
		return outcome{status: http.StatusBadRequest, label: OutcomeMalformed, message: "body is not JSON"}
	}
	if d.notification != nil && !d.notification.IsData() {
		return rc.control(ctx, v, d.notification, now)
	}
	delivery := deliveryID(v, r.Header, d, body)
	return rc.relay(ctx, v, r.Header, body, d, delivery, now)
}

// relay publishes one genuine delivery exactly once and does what its
// notification asks.
func (rc *Receiver) relay(ctx context.Context, v Vendor, h http.Header, body []byte, d description, delivery string, now time.Time) outcome {
	dup, err := rc.checker.seen(ctx, v.Name, delivery)
	if err != nil {
		return unavailable("cannot check for a redelivery", err)
	}
	if dup {
		// The vendor retried after an answer it did not get: keep it quiet.
		_ = rc.state.touch(ctx, v.Name, now)
		return outcome{status: http.StatusOK, label: OutcomeDuplicate, message: "already received"}
	}
	if rc.d.Connected != nil && !rc.d.Connected() {
		return unavailable("event stream unavailable", errors.New("nats: not connected"))
	}
	var fetches []Fetch
	if d.notification != nil {
		fetches = rc.plan(v, d.notification, delivery)
		// Taken before the event is published: a throttled notification is
		// neither relayed nor fetched, and the vendor sends it again later.
		if o, ok := rc.reserve(ctx, v, len(fetches), now); !ok {
			return o
		}
	}
	env, err := rc.event(v, h, body, d.eventType, delivery, now)
	if err != nil {
		return outcome{status: http.StatusInternalServerError, label: OutcomeMalformed, message: "cannot build the event", err: err}
	}
	pubCtx, cancel := context.WithTimeout(ctx, rc.d.PublishTimeout)
	ack, err := events.Publish(pubCtx, rc.d.JetStream, rc.d.SubjectPrefix, env.Traced(ctx))
	cancel()
	if err != nil {
		return unavailable("event stream unavailable", err)
	}
	if d.notification != nil {
		if err := rc.followUp(ctx, v, d.notification, fetches, delivery, now); err != nil {
			// Not marked: the vendor's retry republishes (same Nats-Msg-Id)
			// and fetches again.
			return unavailable("cannot enqueue the fetch the notification needs", err)
		}
	}
	mark := markRequest{vendor: v.Name, delivery: delivery, window: v.DedupWindow, now: now}
	markErr := func() error {
		if d.notification != nil {
			// Its fetches were enqueued: a redelivery must see the mark, not
			// enqueue them again (they are idempotent, but cost a request).
			return rc.state.markSeen(ctx, mark)
		}
		return rc.marker.mark(ctx, mark)
	}
	if err := markErr(); err != nil {
		// The event is stored: acknowledge. A redelivery within JetStream's
		// duplicate window is still dropped by its Nats-Msg-Id.
		rc.d.Logger.Warn().Str("vendor", v.Name).Err(err).Msg("webhook relayed but not marked; a late redelivery may be relayed again")
	}
	if ack.Duplicate {
		return outcome{status: http.StatusOK, label: OutcomeDuplicate, message: "already received"}
	}
	return outcome{status: http.StatusOK, label: OutcomeAccepted, message: "received"}
}

func unavailable(msg string, err error) outcome {
	return outcome{status: http.StatusServiceUnavailable, label: OutcomeUnavailable,
		message: msg + "; retry later", err: err, retryAfter: 5}
}

// event builds the webhook.received event of a delivery.
func (rc *Receiver) event(v Vendor, h http.Header, body []byte, eventType, delivery string, now time.Time) (events.Envelope, error) {
	env, err := events.NewWithID(EventID(v.Name, delivery), events.TypeWebhookReceived, v.Name,
		events.WebhookSubject(v.Name, eventType), now, events.WebhookReceived{
			Vendor: v.Name, EventType: eventType, DeliveryID: delivery, ReceivedAt: now.UTC(),
			Headers: keptHeaders(v, h), Body: body,
		})
	if err != nil {
		return events.Envelope{}, fmt.Errorf("webhooks: %w", err)
	}
	return env, nil
}

// EventID is the event id (and Nats-Msg-Id) of a vendor's delivery: the
// same for every redelivery, so JetStream drops a re-publish within its
// window and consumers can tell a replay.
func EventID(vendor, delivery string) string {
	return "wh-" + hashID(vendor, delivery)
}

// keptHeaders are the headers worth keeping for consumers and replays:
// never one holding the secret itself.
var keptHeaderNames = []string{"Content-Type", "User-Agent", verify.HeaderID, verify.HeaderTimestamp}

func keptHeaders(v Vendor, h http.Header) map[string]string {
	out := make(map[string]string, 4)
	for _, name := range keptHeaderNames {
		if val := h.Get(name); val != "" {
			out[strings.ToLower(name)] = val
		}
	}
	if v.SignatureHeader != "" {
		if val := h.Get(v.SignatureHeader); val != "" {
			out[strings.ToLower(v.SignatureHeader)] = val
		}
	}
	if v.SecretHeader != "" {
		delete(out, strings.ToLower(v.SecretHeader))
	}
	return out
}

// description is what the receiver reads from a body.
type description struct {
	eventType    string
	notification *fhirnotify.Notification
}

// probe is the fields an event type may come from.
type probe struct {
	ResourceType string `json:"resourceType"`
	Type         any    `json:"type"`
	EventType    string `json:"event_type"`
	EventType2   string `json:"eventType"`
	Event        any    `json:"event"`
	Meta         struct {
		DataModel string `json:"DataModel"`
		EventType string `json:"EventType"`
	} `json:"Meta"`
}

// describe finds a body's event type and, for a FHIR Bundle, its
// subscription notification.
// ok is false when the body is not JSON.
func describe(body []byte) (d description, ok bool) {
	var p probe
	if err := json.Unmarshal(body, &p); err != nil {
		// Valid JSON of another shape (an array, a number for "Meta") is
		// still relayed; a syntax error is not.
		if se := (*json.SyntaxError)(nil); errors.As(err, &se) || len(body) == 0 {
			return description{}, false
		}
	}
	return describeProbe(body, p), true
}

func describeProbe(body []byte, p probe) description {
	if p.ResourceType == "Bundle" {
		if n, err := fhirnotify.Parse(body); err == nil {
			t := n.ResourceType()
			if t == "" {
				t = lastSegment(n.Topic)
			}
			if t == "" {
				t = "notification"
			}
			return description{eventType: sanitizeToken(t), notification: &n}
		}
	}
	switch {
	case p.Meta.DataModel != "" || p.Meta.EventType != "":
		return description{eventType: sanitizeToken(strings.Trim(p.Meta.DataModel+"-"+p.Meta.EventType, "-"))}
	case stringOf(p.Type) != "":
		return description{eventType: sanitizeToken(stringOf(p.Type))}
	case p.EventType != "":
		return description{eventType: sanitizeToken(p.EventType)}
	case p.EventType2 != "":
		return description{eventType: sanitizeToken(p.EventType2)}
	case stringOf(p.Event) != "":
		return description{eventType: sanitizeToken(stringOf(p.Event))}
	case p.ResourceType != "":
		return description{eventType: sanitizeToken(p.ResourceType)}
	}
	return description{eventType: "unknown"}
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func lastSegment(u string) string {
	u = strings.TrimRight(u, "/")
	if i := strings.LastIndexAny(u, "/#:"); i >= 0 {
		return u[i+1:]
	}
	return u
}

// deliveryID is what recognises a redelivery, and only what the vendor's
// verification vouches for, so that a captured delivery replayed with
// another id is still recognised: the id its signature covers (Standard
// Webhooks' webhook-id); otherwise what is in the body: for a FHIR
// notification its subscription and eventsSinceSubscriptionStart, for any
// other a hash of the body. An id in a header the signature does not
// cover (a webhook-id sent to a vendor verified by token or body HMAC) is
// ignored.
func deliveryID(v Vendor, h http.Header, d description, body []byte) string {
	if s, ok := v.Verifier.(verify.IDSigner); ok {
		if id := s.SignedID(h); id != "" {
			return "id:" + id
		}
	}
	if n := d.notification; n != nil && n.Subscription != "" && n.EventsSinceSubscriptionStart > 0 {
		return fmt.Sprintf("fhir:%s:%d", n.Subscription, n.EventsSinceSubscriptionStart)
	}
	sum := sha256.Sum256(body)
	return "body:" + hex.EncodeToString(sum[:])
}

// handshakeBody answers Redox's POST verification: a JSON body with a
// verification-token and a challenge. ok is false for any other body.
func (rc *Receiver) handshakeBody(v Vendor, body []byte) (outcome, bool) {
	var hs struct {
		Token     *string `json:"verification-token"`
		Challenge *string `json:"challenge"`
	}
	if json.Unmarshal(body, &hs) != nil || hs.Token == nil || hs.Challenge == nil {
		return outcome{}, false
	}
	return rc.answerChallenge(v, *hs.Token, *hs.Challenge), true
}

// handshakeQuery answers Redox's GET verification.
func (rc *Receiver) handshakeQuery(v Vendor, q url.Values) outcome {
	if v.Handshake == nil {
		return outcome{status: http.StatusMethodNotAllowed, label: OutcomeMalformed, message: "use POST"}
	}
	if !q.Has("challenge") {
		return outcome{status: http.StatusBadRequest, label: OutcomeMalformed, message: "verification needs a challenge"}
	}
	return rc.answerChallenge(v, q.Get("verification-token"), q.Get("challenge"))
}

// maxChallenge bounds the challenge echoed back.
const maxChallenge = 256

func (rc *Receiver) answerChallenge(v Vendor, token, challenge string) outcome {
	if token == "" {
		return outcome{status: http.StatusUnauthorized, label: OutcomeBadSignature, message: "verification-token missing"}
	}
	if v.Handshake.Match(token) != nil {
		return outcome{status: http.StatusUnauthorized, label: OutcomeBadSignature, message: "verification-token does not match"}
	}
	if challenge == "" || len(challenge) > maxChallenge || strings.ContainsAny(challenge, "\r\n<>") {
		return outcome{status: http.StatusBadRequest, label: OutcomeMalformed, message: "challenge missing or malformed"}
	}
	_ = rc.state.touch(context.Background(), v.Name, rc.d.Clock())
	return outcome{status: http.StatusOK, label: OutcomeHandshake, message: "endpoint verified", body: challenge}
}
