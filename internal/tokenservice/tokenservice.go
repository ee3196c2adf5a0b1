// Package tokenservice is the worker side of token retrieval: a NATS micro
// service that answers prefix + "token.get.<vendor>.<credential>" requests
// with the credential's current token, read from the credential store, in
// the client.TokenReply shape. Every worker replica runs one, all in one
// queue group, so each request is answered exactly once by whichever
// replica gets it.
//
// It never hands out an expired token and never logs one: the log carries
// vendor, credential, generation, outcome and source.
//
// Requests are answered concurrently (Options.Concurrency at a time), and
// through a store outage: the store is read first, as the source of truth,
// but each token read is kept in a bounded in-memory cache, sealed under a
// key that lives only in this process. When a read fails, or has not
// answered within Options.StallTimeout, the cached token is served if it
// has not expired and no newer generation or revocation has been heard of
// (the service follows token.renewed and key.revoked on NATS); from then
// on, until a read succeeds, cached tokens are answered without waiting.
// Reading the store first, rather than serving the cache first, keeps the
// answer as fresh as the store whenever the store is up: a revocation
// whose event was missed, or a state set by an operator, is seen at once.
//
// Each request is a token.get span, a child of the caller's (its request's
// trace headers). A reply's traceparent header names the renewal that
// produced the token (store.Credential.RenewalTrace, kept in the cache with
// the token), when that renewal was sampled, so that the consumer's span
// can link to it (client.RenewalLink).
//
// It answers only to reply inboxes (Options.InboxPrefix): a request naming
// any other reply subject is dropped and logged, so that no requester can
// make it publish a token on an event subject or anywhere else.
package tokenservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/internal/natsinbox"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// Identity of the micro service, as seen by `nats micro ls` and $SRV.INFO.
const (
	ServiceName    = "tokenrelay-tokens"
	ServiceVersion = "1.0.0"
	EndpointName   = "get"
)

// Defaults of Options.
const (
	DefaultQueueGroup   = "tokenrelay-workers"
	DefaultReadTimeout  = 2 * time.Second
	DefaultStallTimeout = 250 * time.Millisecond
	DefaultCacheSize    = 100_000
	DefaultConcurrency  = 64
)

// TokenReader reads a credential with its current token (no client secret
// needed). *store.Store satisfies it; it returns store.ErrNotFound for an
// unknown id.
type TokenReader interface {
	CurrentToken(ctx context.Context, id string) (store.Credential, error)
}

// TokenReaderFunc adapts a function to a TokenReader.
type TokenReaderFunc func(ctx context.Context, id string) (store.Credential, error)

// CurrentToken calls f.
func (f TokenReaderFunc) CurrentToken(ctx context.Context, id string) (store.Credential, error) {
	return f(ctx, id)
}

// Options configure the service.
type Options struct {
	// SubjectPrefix is prepended to every subject (default ""), e.g.
	// "tenant-a."; it must match the clients' client.WithSubjectPrefix.
	SubjectPrefix string
	// Reader reads credentials. Required.
	Reader TokenReader
	// Clock decides whether a token has expired (default time.Now).
	Clock func() time.Time
	// Logger gets one debug line per request (the zero Logger logs nothing).
	Logger zerolog.Logger
	// QueueGroup is the NATS queue group of the endpoint (default
	// DefaultQueueGroup); replicas must share it to share the requests.
	QueueGroup string
	// ReadTimeout bounds one read of the store (default DefaultReadTimeout,
	// 2s), so that a slow store does not hold up the requests queued
	// behind it for long.
	ReadTimeout time.Duration
	// InboxPrefix is the only place answers go: a request whose reply
	// subject is not under it is dropped and logged, never answered (see
	// natsinbox). Default natsinbox.DefaultPrefix, "_INBOX.".
	InboxPrefix string
	// StallTimeout is how long a request waits for the store before it is
	// answered from the cache, when the cache has a token to serve (default
	// DefaultStallTimeout, 250ms). The read goes on in the background, up
	// to ReadTimeout, and refreshes the cache.
	StallTimeout time.Duration
	// CacheSize bounds the credentials whose token is kept for a store
	// outage (default DefaultCacheSize, 100000); the least recently asked
	// go first. Negative: no cache, every answer comes from the store.
	CacheSize int
	// Concurrency is how many requests are answered at once (default
	// DefaultConcurrency, 64), so that one slow read does not hold up the
	// others. Reads of one credential in flight at once are shared.
	Concurrency int
}

// New registers the token service on nc and starts answering. Stop the
// returned service (Stop drains its subscriptions) when shutting down.
// As with any micro service, set nc's closed and error handlers before
// calling New: handlers set afterwards replace the ones micro relies on.
//
// micro runs an endpoint's handler on its subscription's goroutine; the
// handler hands each request to a goroutine of its own (Options.Concurrency
// at most) and answers from there. Each is a single store read, bounded by
// Options.ReadTimeout, or a cache hit. Replicas share the load.
func New(nc *nats.Conn, opts Options) (micro.Service, error) {
	if nc == nil {
		return nil, errors.New("tokenservice: nil NATS connection")
	}
	if opts.Reader == nil {
		return nil, errors.New("tokenservice: Options.Reader is required")
	}
	if err := client.CheckSubjectPrefix(opts.SubjectPrefix); err != nil {
		return nil, fmt.Errorf("tokenservice: Options.SubjectPrefix: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.QueueGroup == "" {
		opts.QueueGroup = DefaultQueueGroup
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.InboxPrefix == "" {
		opts.InboxPrefix = natsinbox.DefaultPrefix
	}
	if err := natsinbox.CheckPrefix(opts.InboxPrefix); err != nil {
		return nil, fmt.Errorf("tokenservice: Options.InboxPrefix: %w", err)
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	h := &handler{
		opts: opts, nc: nc, base: opts.SubjectPrefix + "token.get.",
		slots: make(chan struct{}, opts.Concurrency), flights: make(map[cacheKey]*flight),
	}
	if opts.CacheSize > 0 {
		c, err := newCache(opts.CacheSize)
		if err != nil {
			return nil, err
		}
		h.cache = c
	}
	subs, err := h.follow(nc)
	if err != nil {
		return nil, err
	}
	unsubscribe := func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "hands out the current token of a credential",
		QueueGroup:  opts.QueueGroup,
	})
	if err != nil {
		unsubscribe()
		return nil, fmt.Errorf("tokenservice: add service: %w", err)
	}
	err = svc.AddEndpoint(EndpointName, natsinbox.Guard(ServiceName, opts.InboxPrefix, opts.Logger, micro.HandlerFunc(h.handle)),
		micro.WithEndpointSubject(h.base+"*.*"),
		micro.WithEndpointQueueGroup(opts.QueueGroup))
	if err != nil {
		_ = svc.Stop()
		unsubscribe()
		return nil, fmt.Errorf("tokenservice: add endpoint: %w", err)
	}
	return &service{Service: svc, unsubscribe: unsubscribe}, nil
}

// service is the micro service with the event subscriptions that keep its
// cache current, ended together by Stop.
type service struct {
	micro.Service
	unsubscribe func()
}

// Stop stops the micro service and the event subscriptions.
func (s *service) Stop() error {
	err := s.Service.Stop()
	s.unsubscribe()
	return err
}

type handler struct {
	nc    *nats.Conn
	opts  Options
	base  string        // prefix + "token.get."
	cache *cache        // nil when Options.CacheSize < 0
	slots chan struct{} // one per request being answered

	mu      sync.Mutex
	flights map[cacheKey]*flight // store reads in flight

	// storeDown is set while the store is failing or stalled (the last
	// read failed, or a read outlasted Options.StallTimeout).
	storeDown atomic.Bool
}

// handle hands one request to a goroutine of its own, waiting for a free
// slot when Options.Concurrency requests are already being answered.
func (h *handler) handle(req micro.Request) {
	h.slots <- struct{}{}
	go func() {
		defer func() { <-h.slots }()
		h.serve(req)
	}()
}

// serve answers one request.
func (h *handler) serve(req micro.Request) {
	vendor, credential, ok := h.parse(req.Subject())
	_, span := traceServe(req, vendor, credential)
	defer span.End()
	a := answer{reply: client.TokenReply{Error: client.CodeNotFound, Message: "malformed token subject"}, source: "store"}
	if ok {
		a = h.answer(vendor, credential)
	}
	reply, source := a.reply, a.source

	log := h.opts.Logger.Debug().Str("vendor", vendor).Str("credential", credential).Str("source", source)
	if reply.Error == "" {
		log = log.Int64("generation", reply.Generation).Str("outcome", "token")
	} else {
		log = log.Str("outcome", reply.Error)
	}
	endServe(span, a)
	if err := h.respond(req.Reply(), a); err != nil {
		h.opts.Logger.Warn().Err(err).Str("vendor", vendor).Str("credential", credential).Msg("token reply not sent")
	}
	log.Msg("token request")
}

// parse splits "<prefix>token.get.<vendor>.<credential>". The prefix may
// hold dots, so it is cut off first.
func (h *handler) parse(subject string) (vendor, credential string, ok bool) {
	rest, ok := strings.CutPrefix(subject, h.base)
	if !ok {
		return "", "", false
	}
	vendor, credential, ok = strings.Cut(rest, ".")
	if !ok || vendor == "" || credential == "" || strings.Contains(credential, ".") {
		return "", "", false
	}
	return vendor, credential, true
}

// answer is a reply to a token request.
type answer struct {
	reply client.TokenReply
	// renewal is the trace context of the renewal that produced the token
	// answered (zero for an error reply, or when that renewal was not
	// sampled).
	renewal tracing.Carrier
	source  string // "store" or "cache"
}

// answer reads the credential and decides the reply.
func (h *handler) answer(vendor, credential string) answer {
	k := cacheKey{vendor, credential}
	f := h.read(k)
	if h.cache != nil {
		// While the store is known to be failing or stalled, a servable
		// token is answered at once; the read goes on, and the first one
		// to succeed ends the outage.
		if h.storeDown.Load() {
			if c, ok := h.cache.get(k, h.opts.Clock()); ok {
				return cachedAnswer(c)
			}
		}
		stall := time.NewTimer(h.opts.StallTimeout)
		defer stall.Stop()
		select {
		case <-f.done:
		case <-stall.C:
			h.storeDown.Store(true)
			if c, ok := h.cache.get(k, h.opts.Clock()); ok {
				return cachedAnswer(c)
			}
			<-f.done
		}
	} else {
		<-f.done
	}
	if f.err != nil && !errors.Is(f.err, store.ErrNotFound) && h.cache != nil {
		if c, ok := h.cache.get(k, h.opts.Clock()); ok {
			return cachedAnswer(c)
		}
	}
	reply := h.decide(vendor, credential, f.cred, f.err)
	a := answer{reply: reply, source: "store"}
	if reply.Error == "" {
		a.renewal = tracing.Carrier{TraceParent: f.cred.RenewalTrace}
	}
	return a
}

// decide turns a store read into the reply.
func (h *handler) decide(vendor, credential string, cred store.Credential, err error) client.TokenReply {
	notFound := client.TokenReply{Error: client.CodeNotFound, Message: fmt.Sprintf("no credential %s/%s", vendor, credential)}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound
	case err != nil:
		return unavailable
	case cred.Vendor != vendor:
		// Said exactly as for a missing credential, so that asking under
		// another vendor reveals nothing.
		return notFound
	case cred.State == store.StateRevoked:
		return revoked
	case cred.Generation == 0 || cred.Token.AccessToken.IsZero():
		return client.TokenReply{Error: client.CodeUnavailable, Message: "no token yet"}
	case cred.State == store.StateExpired || !h.opts.Clock().Before(cred.Token.ExpiresAt):
		return client.TokenReply{Error: client.CodeExpired, Message: "token expired, renewal pending"}
	}
	return client.TokenReply{
		AccessToken: cred.Token.AccessToken.Reveal(), // leaves for the client it belongs to
		TokenType:   cred.Token.TokenType,
		ExpiresAt:   cred.Token.ExpiresAt.UTC(),
		Generation:  cred.Generation,
	}
}

var (
	unavailable = client.TokenReply{Error: client.CodeUnavailable, Message: "credential store unavailable, try again later"}
	revoked     = client.TokenReply{Error: client.CodeRevoked, Message: "credential revoked by the vendor, reconnect it"}
)

// cachedAnswer is the answer for what the cache holds.
func cachedAnswer(c cached) answer {
	if c.revoked {
		return answer{reply: revoked, source: "cache"}
	}
	return answer{reply: client.TokenReply{
		AccessToken: c.accessToken, TokenType: c.tokenType,
		ExpiresAt: c.expiresAt.UTC(), Generation: c.gen,
	}, renewal: tracing.Carrier{TraceParent: c.trace}, source: "cache"}
}

// Header codes of the error replies (micro's Nats-Service-Error-Code),
// for tools that read micro's headers; the JSON body is the contract.
var errorHeaderCodes = map[string]string{
	client.CodeNotFound:    "404",
	client.CodeRevoked:     "410",
	client.CodeExpired:     "410",
	client.CodeUnavailable: "503",
}

// respond publishes the reply to the requester's inbox (checked by
// natsinbox.Guard). It does not go through micro.Request, whose methods
// record the outcome in fields micro reads when the handler returns: from
// another goroutine that is a data race. So micro's stats count the
// requests but not the errors; an error reply still carries micro's error
// headers, for the tools that read them.
//
// The reply's headers carry the trace context of the renewal that produced
// the token (traceparent), when tracing sampled it: the consumer's span
// links to it (client.RenewalLink). The service's own span is the
// caller's child; the caller has that trace already.
func (h *handler) respond(inbox string, a answer) error {
	reply := a.reply
	body, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: inbox, Data: body}
	if reply.Error != "" {
		code := errorHeaderCodes[reply.Error]
		if code == "" {
			code = "500"
		}
		msg.Header = nats.Header{micro.ErrorHeader: {reply.Message}, micro.ErrorCodeHeader: {code}}
	}
	if a.renewal.SpanContext().IsValid() {
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header.Set("traceparent", a.renewal.TraceParent)
	}
	return h.nc.PublishMsg(msg)
}
