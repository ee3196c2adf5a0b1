// Package tokenservice is the worker side of token retrieval: a NATS micro
// service that answers prefix + "token.get.<vendor>.<credential>" requests
// with the credential's current token, read from the credential store, in
// the client.TokenReply shape. Every worker replica runs one, all in one
// queue group, so each request is answered exactly once by whichever
// replica gets it.
//
// It never hands out an expired token and never logs one: the log carries
// vendor, credential, generation and outcome. It answers only to reply
// inboxes (Options.InboxPrefix): a request naming any other reply subject
// is dropped and logged, so that no requester can make it publish a token
// on an event subject or anywhere else.
package tokenservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/internal/natsinbox"
	"github.com/tokenrelay/tokenrelay/store"
)

// Identity of the micro service, as seen by `nats micro ls` and $SRV.INFO.
const (
	ServiceName    = "tokenrelay-tokens"
	ServiceVersion = "1.0.0"
	EndpointName   = "get"
)

// Defaults of Options.
const (
	DefaultQueueGroup  = "tokenrelay-workers"
	DefaultReadTimeout = 2 * time.Second
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
}

// New registers the token service on nc and starts answering. Stop the
// returned service (Stop drains its subscriptions) when shutting down.
// As with any micro service, set nc's closed and error handlers before
// calling New: handlers set afterwards replace the ones micro relies on.
//
// Requests on one connection are answered one after the other (micro runs
// an endpoint's handler on its subscription's goroutine); each is a single
// store read, bounded by Options.ReadTimeout. Replicas share the load.
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
	h := &handler{opts: opts, base: opts.SubjectPrefix + "token.get."}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     ServiceVersion,
		Description: "hands out the current token of a credential",
		QueueGroup:  opts.QueueGroup,
	})
	if err != nil {
		return nil, fmt.Errorf("tokenservice: add service: %w", err)
	}
	err = svc.AddEndpoint(EndpointName, natsinbox.Guard(ServiceName, opts.InboxPrefix, opts.Logger, micro.HandlerFunc(h.handle)),
		micro.WithEndpointSubject(h.base+"*.*"),
		micro.WithEndpointQueueGroup(opts.QueueGroup))
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("tokenservice: add endpoint: %w", err)
	}
	return svc, nil
}

type handler struct {
	opts Options
	base string // prefix + "token.get."
}

// handle answers one request.
func (h *handler) handle(req micro.Request) {
	vendor, credential, ok := h.parse(req.Subject())
	var reply client.TokenReply
	if ok {
		reply = h.answer(vendor, credential)
	} else {
		reply = client.TokenReply{Error: client.CodeNotFound, Message: "malformed token subject"}
	}

	log := h.opts.Logger.Debug().Str("vendor", vendor).Str("credential", credential)
	var err error
	if reply.Error == "" {
		log = log.Int64("generation", reply.Generation).Str("outcome", "token")
		err = req.RespondJSON(reply)
	} else {
		log = log.Str("outcome", reply.Error)
		err = respondError(req, reply)
	}
	if err != nil {
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

// answer reads the credential and decides the reply.
func (h *handler) answer(vendor, credential string) client.TokenReply {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.ReadTimeout)
	defer cancel()
	cred, err := h.opts.Reader.CurrentToken(ctx, credential)
	notFound := client.TokenReply{Error: client.CodeNotFound, Message: fmt.Sprintf("no credential %s/%s", vendor, credential)}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound
	case err != nil:
		h.opts.Logger.Warn().Err(err).Str("vendor", vendor).Str("credential", credential).Msg("token request: read credential")
		return client.TokenReply{Error: client.CodeUnavailable, Message: "credential store unavailable, try again later"}
	case cred.Vendor != vendor:
		// Said exactly as for a missing credential, so that asking under
		// another vendor reveals nothing.
		return notFound
	case cred.State == store.StateRevoked:
		return client.TokenReply{Error: client.CodeRevoked, Message: "credential revoked by the vendor, reconnect it"}
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

// Header codes of the error replies (micro's Nats-Service-Error-Code),
// for tools that read micro's headers; the JSON body is the contract.
var errorHeaderCodes = map[string]string{
	client.CodeNotFound:    "404",
	client.CodeRevoked:     "410",
	client.CodeExpired:     "410",
	client.CodeUnavailable: "503",
}

// respondError sends an error reply: the JSON body, plus micro's error
// headers so that the service's stats count it.
func respondError(req micro.Request, reply client.TokenReply) error {
	body, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	code := errorHeaderCodes[reply.Error]
	if code == "" {
		code = "500"
	}
	return req.Error(code, reply.Message, body)
}
