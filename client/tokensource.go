package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/tokenrelay/tokenrelay/internal/tracing/natsprop"
)

// Defaults of the options.
const (
	DefaultTimeout      = 5 * time.Second
	DefaultExpiryMargin = 10 * time.Second
)

// Option configures a TokenSource.
type Option func(*options)

type options struct {
	prefix  string
	timeout time.Duration
	margin  time.Duration
	now     func() time.Time
}

// WithSubjectPrefix sets the subject prefix the relay was configured with
// (default ""): tokens are requested on TokenSubject(prefix, ...) and
// renewals followed on RenewedSubject(prefix, ...).
func WithSubjectPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithTimeout sets how long one token request waits for the relay's reply
// (default DefaultTimeout, 5s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithExpiryMargin sets how long before its expiry a cached token counts as
// stale and is fetched again (default DefaultExpiryMargin, 10s). For short
// tokens the margin shrinks to a fifth of the lifetime the token had left
// when it was fetched, so that a 30s token is not refetched on every call.
func WithExpiryMargin(d time.Duration) Option {
	return func(o *options) { o.margin = d }
}

// WithClock sets the clock freshness and expiry are judged by (default
// time.Now); meant for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// TokenSource hands out one credential's current token, fetched from the
// relay and cached while fresh. It is safe for concurrent use: concurrent
// callers that find no fresh token share one request. It follows the
// credential's token.renewed events: one announcing a newer generation
// than the cached token's makes the next call return the new token (which
// is prefetched in the background). Close it when done.
type TokenSource struct {
	nc                 *nats.Conn
	vendor, credential string
	subject            string
	opts               options
	sub                *nats.Subscription

	// ctx is cancelled by Close, ending background fetches; wg counts them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	cur *cached // nil before the first token, after a definitive error
	// gen is the highest generation known: the cached token's, or a
	// higher one announced by a renewal event.
	gen int64
	// epoch is bumped by every renewal acted on; a fetch started in an
	// older epoch may be returned to its waiters but is not cached.
	epoch    uint64
	inflight *fetch
	closed   bool
	// Counters read by the tests (export_test.go).
	eventsSeen, renewals int
}

// cached is a token and when it goes stale.
type cached struct {
	tok     oauth2.Token
	gen     int64
	staleAt time.Time // zero once a renewal has superseded it
}

// fetch is one token request shared by everyone waiting on done.
type fetch struct {
	done    chan struct{}
	epoch   uint64
	waiters int          // callers waiting on it, guarded by TokenSource.mu (for tests)
	tok     oauth2.Token // set before done is closed
	err     error        // set before done is closed
	// caller is the trace context of the caller that started the fetch:
	// its token.get request carries it (shared callers ride along).
	caller trace.SpanContext
}

var _ oauth2.TokenSource = (*TokenSource)(nil)

// NewTokenSource returns a TokenSource for the credential of the vendor
// instance (as named in the relay's configuration), requesting tokens over
// nc. It subscribes to the credential's renewals at once and waits (up to
// the request timeout) for the server to confirm, so a renewal announced
// after it returns is not missed; when the server cannot be reached it
// returns anyway, and nats.go makes the subscription on reconnecting.
func NewTokenSource(nc *nats.Conn, vendor, credential string, opts ...Option) (*TokenSource, error) {
	o := options{timeout: DefaultTimeout, margin: DefaultExpiryMargin, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case nc == nil:
		return nil, errors.New("tokenrelay client: nil NATS connection")
	case o.timeout <= 0:
		return nil, fmt.Errorf("tokenrelay client: timeout %s is not positive", o.timeout)
	case o.margin < 0:
		return nil, fmt.Errorf("tokenrelay client: expiry margin %s is negative", o.margin)
	case o.now == nil:
		return nil, errors.New("tokenrelay client: nil clock")
	}
	for _, err := range []error{checkToken("vendor", vendor), checkToken("credential", credential), CheckSubjectPrefix(o.prefix)} {
		if err != nil {
			return nil, fmt.Errorf("tokenrelay client: %w", err)
		}
	}
	s := &TokenSource{
		nc:         nc,
		vendor:     vendor,
		credential: credential,
		subject:    TokenSubject(o.prefix, vendor, credential),
		opts:       o,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	sub, err := nc.Subscribe(RenewedSubject(o.prefix, vendor, credential), s.onRenewed)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("tokenrelay client: subscribe to renewals of %s/%s: %w", vendor, credential, err)
	}
	s.sub = sub
	_ = nc.FlushTimeout(o.timeout) // best effort; see the doc comment
	return s, nil
}

// Token returns the credential's current token, from the cache while it is
// fresh, else from the relay. It implements oauth2.TokenSource. Errors wrap
// ErrNotFound, ErrRevoked, ErrExpired, ErrUnavailable or ErrClosed.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	return s.TokenContext(context.Background())
}

// TokenContext is Token bounded by ctx: it gives up waiting for the relay
// when ctx is done (a request shared with other callers goes on for them).
//
// When the relay cannot hand out a token (ErrUnavailable: none answered,
// its store is down) but the previously fetched token has not expired yet,
// that token is returned: it is stale only by the expiry margin, or because
// a renewal was announced, and still works. An expired token is never
// returned.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, s.wrap(ErrClosed)
	}
	if c := s.cur; c != nil && s.opts.now().Before(c.staleAt) {
		tok := c.tok
		s.mu.Unlock()
		return &tok, nil
	}
	f := s.inflight
	if f == nil {
		f = s.startFetchLocked(trace.SpanContextFromContext(ctx))
	}
	f.waiters++
	s.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, s.wrap(context.Cause(ctx))
	}
	if f.err == nil {
		tok := f.tok
		return &tok, nil
	}
	if errors.Is(f.err, ErrUnavailable) {
		s.mu.Lock()
		c := s.cur
		s.mu.Unlock()
		if c != nil && s.opts.now().Before(c.tok.Expiry) {
			tok := c.tok
			return &tok, nil
		}
	}
	return nil, f.err
}

// Close stops following renewals, ends background fetches and makes
// further calls of Token fail with ErrClosed. It does not close the NATS
// connection. Calling it again does nothing.
func (s *TokenSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cur = nil
	s.mu.Unlock()

	err := s.sub.Unsubscribe()
	s.cancel()
	s.wg.Wait()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("tokenrelay client: unsubscribe from renewals of %s/%s: %w", s.vendor, s.credential, err)
	}
	return nil
}

// onRenewed handles a token.renewed event: a CloudEvents envelope of
// which only data.generation matters here.
func (s *TokenSource) onRenewed(m *nats.Msg) {
	var ev struct {
		Data struct {
			Generation int64 `json:"generation"`
		} `json:"data"`
	}
	err := json.Unmarshal(m.Data, &ev)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventsSeen++
	if err != nil || s.closed || ev.Data.Generation <= s.gen {
		return
	}
	s.gen = ev.Data.Generation
	s.epoch++
	s.renewals++
	if s.cur == nil {
		return // nobody has asked for a token yet: nothing to prefetch
	}
	s.cur.staleAt = time.Time{} // kept only as a fallback while valid
	// The prefetch continues the renewal's trace (the event's headers).
	s.startFetchLocked(trace.SpanContextFromContext(natsprop.Extract(context.Background(), m.Header)))
}

// startFetchLocked starts a request in the background; s.mu is held.
func (s *TokenSource) startFetchLocked(caller trace.SpanContext) *fetch {
	f := &fetch{done: make(chan struct{}), epoch: s.epoch, caller: caller}
	s.inflight = f
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(f)
	}()
	return f
}

// run performs f and records its outcome.
func (s *TokenSource) run(f *fetch) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.timeout)
	defer cancel()
	reply, renewal, err := s.request(trace.ContextWithSpanContext(ctx, f.caller))

	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(f.done)
	if s.inflight == f {
		s.inflight = nil
	}
	now := s.opts.now()
	if err == nil && !now.Before(reply.ExpiresAt) {
		err = fmt.Errorf("%w: token reached this process expired (at %s; is the clock right?)",
			ErrExpired, reply.ExpiresAt.Format(time.RFC3339))
	}
	current := f.epoch == s.epoch && !s.closed
	if err != nil {
		f.err = s.wrap(err)
		if current && !errors.Is(err, ErrUnavailable) {
			s.cur = nil // revoked, gone or expired: the old token is no fallback
		}
		return
	}
	f.tok = oauth2.Token{AccessToken: reply.AccessToken, TokenType: reply.TokenType, Expiry: reply.ExpiresAt}
	if renewal != "" {
		f.tok = *f.tok.WithExtra(map[string]any{ExtraRenewalTrace: renewal})
	}
	if current {
		s.cur = &cached{tok: f.tok, gen: reply.Generation, staleAt: staleAt(now, reply.ExpiresAt, s.opts.margin)}
		s.gen = reply.Generation
	}
}

// request asks the relay for the token once, with ctx's trace context (if
// any) in the request's headers: the relay's span is the caller's child.
// renewal is the reply's traceparent header: the renewal that produced the
// token, when the relay traced it.
func (s *TokenSource) request(ctx context.Context) (reply TokenReply, renewal string, err error) {
	req := nats.NewMsg(s.subject)
	natsprop.Inject(ctx, req.Header)
	msg, err := s.nc.RequestMsgWithContext(ctx, req)
	if err != nil {
		return TokenReply{}, "", fmt.Errorf("%w: request on %s: %w", ErrUnavailable, s.subject, err)
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return TokenReply{}, "", fmt.Errorf("%w: unreadable reply on %s: %w", ErrUnavailable, s.subject, err)
	}
	if err := reply.Err(); err != nil {
		return reply, "", err
	}
	if renewalLink(msg.Header.Get("traceparent")).SpanContext.IsValid() {
		renewal = msg.Header.Get("traceparent")
	}
	return reply, renewal, nil
}

func (s *TokenSource) wrap(err error) error {
	return fmt.Errorf("get token %s/%s: %w", s.vendor, s.credential, err)
}

// staleAt is when a token fetched at now and expiring at expiresAt stops
// being served from the cache: margin before its expiry, or a fifth of its
// remaining lifetime before it when that is shorter.
func staleAt(now, expiresAt time.Time, margin time.Duration) time.Time {
	return expiresAt.Add(-min(margin, expiresAt.Sub(now)/5))
}
