package requests

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// Defaults of SubmitterOptions.
const (
	DefaultMaxBody = 1 << 20
	DefaultTTL     = 7 * 24 * time.Hour
)

// Credentials is what submission and the handler need of the credential
// store: the credential's vendor, state and current token.
type Credentials interface {
	CurrentToken(ctx context.Context, id string) (store.Credential, error)
}

// SubmitterOptions configure a Submitter. Redis, Credentials and Vendors are
// required.
type SubmitterOptions struct {
	Redis redis.UniversalClient
	// Prefix is the store's key prefix (config redis.prefix). Default
	// "tokenrelay:".
	Prefix      string
	Credentials Credentials
	// Vendors are the configured vendor instances, by name.
	Vendors map[string]config.Vendor
	// Account names the budget account of a credential. Default
	// AccountFor(Vendors).
	Account func(vendor, credential string) string
	// MaxBody is the largest request body accepted, in bytes. Default 1 MiB.
	MaxBody int
	// TTL is how long a request's and a batch's records are kept after
	// their last change. Default 7 days.
	TTL time.Duration
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Keyring seals each queued request (it holds patient data) with the
	// master key. Required.
	Keyring *seal.Keyring
}

// AccountFor returns the budget account of a credential as package budget
// names it: one per credential where the vendor limits each OAuth client
// (Halaxy), else one per vendor instance (HealthSync limits the plan).
func AccountFor(vendors map[string]config.Vendor) func(vendor, credential string) string {
	return func(vendor, credential string) string {
		if budget.PerClient(string(vendors[vendor].Kind)) {
			return budget.Account(vendor, credential)
		}
		return budget.Account(vendor, "")
	}
}

func (o *SubmitterOptions) defaults() error {
	if o.Redis == nil || o.Credentials == nil || o.Keyring == nil {
		return errors.New("requests: a Redis client, the credential store and the keyring are required")
	}
	if o.Account == nil {
		o.Account = AccountFor(o.Vendors)
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return nil
}

// Submitter validates requests and queues them for the feeder.
type Submitter struct {
	o    SubmitterOptions
	keys keys
	// vendorOf remembers each credential's vendor (a credential never
	// changes vendor; submit.lua checks it anyway), so that a submission
	// needs no read before the step that queues it.
	vendorOf sync.Map
}

// credentialKeyer names a credential's hash in Redis (*store.Store does):
// with it, submit.lua checks the credential in the step that queues the
// request, and a submission is one round trip.
type credentialKeyer interface {
	CredentialKey(id string) string
}

// NewSubmitter checks o and returns a Submitter.
func NewSubmitter(o SubmitterOptions) (*Submitter, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	return &Submitter{o: o, keys: newKeys(o.Prefix)}, nil
}

// Error codes of a refused submission, as NATS and HTTP answers spell them.
const (
	CodeInvalid           = "invalid"
	CodeUnknownCredential = "unknown_credential"
	CodeDuplicate         = "duplicate_id"
	CodeBatchCancelled    = "batch_cancelled"
	CodeUnavailable       = "unavailable"
)

// SubmitError is why a submission was refused. Nothing was queued.
type SubmitError struct {
	Code    string
	Message string
	Err     error // the cause, for CodeUnavailable
}

func (e *SubmitError) Error() string { return "requests: " + e.Code + ": " + e.Message }
func (e *SubmitError) Unwrap() error { return e.Err }

func invalid(format string, args ...any) *SubmitError {
	return &SubmitError{Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

var (
	requestIDRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	batchIDRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	headerRE    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	methods     = map[string]bool{http.MethodGet: true, http.MethodHead: true, http.MethodPost: true,
		http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true}
)

// Submit validates r and queues it; it returns the request as accepted (with
// its id and submission time filled in) or a *SubmitError, and queues
// nothing when it refuses.
func (s *Submitter) Submit(ctx context.Context, r jobs.Request) (out jobs.Request, err error) {
	ctx, span := traceSubmit(ctx)
	defer func() { endSubmit(span, out, err) }()
	now := s.o.Clock()
	r, err = s.check(r, now)
	if err != nil {
		return r, err
	}
	// The credential's vendor as remembered (or as the request names it)
	// is checked by submit.lua in the step that queues the request; when
	// it is not known, or submit.lua finds it wrong, the credential is read
	// first, and the second try is the last.
	keyer, _ := s.o.Credentials.(credentialKeyer)
	for try := 0; ; try++ {
		vendor, known := s.vendorHint(r)
		check := keyer != nil && known && try == 0
		if !check {
			v, _, err := s.validate(ctx, r, now)
			if err != nil {
				return r, err
			}
			vendor = v.Vendor
		}
		q := r
		q.Vendor, q.SubmittedAt = vendor, now.UTC()
		res, err := s.queue(ctx, q, keyer, check, now)
		switch {
		case err != nil:
			return q, err
		case res == "VENDOR":
			s.vendorOf.Delete(r.Credential)
			continue
		case res == "NOCRED":
			s.vendorOf.Delete(r.Credential)
			return q, &SubmitError{Code: CodeUnknownCredential, Message: fmt.Sprintf("no credential %q", r.Credential)}
		case res == "REVOKED":
			return q, &SubmitError{Code: CodeUnknownCredential, Message: fmt.Sprintf("credential %q is revoked", r.Credential)}
		case res == "DUPLICATE":
			// Whoever holds the id, nothing of that request is told.
			return q, &SubmitError{Code: CodeDuplicate, Message: fmt.Sprintf("request id %q is taken (submitted already); give each request an id of its own", r.ID)}
		case res == "CANCELLED":
			return q, &SubmitError{Code: CodeBatchCancelled, Message: fmt.Sprintf("batch %q is cancelled", r.Batch)}
		}
		return q, nil
	}
}

// vendorHint is the vendor r's credential is believed to belong to: the
// one remembered, else the one r names, when it is configured.
func (s *Submitter) vendorHint(r jobs.Request) (string, bool) {
	v, ok := s.vendorOf.Load(r.Credential)
	vendor, _ := v.(string)
	if !ok {
		vendor = r.Vendor
	}
	if vendor == "" || (r.Vendor != "" && r.Vendor != vendor) {
		return "", false
	}
	if _, ok := s.o.Vendors[vendor]; !ok {
		return "", false
	}
	return vendor, true
}

// queue seals r and runs submit.lua (checking its credential when check).
func (s *Submitter) queue(ctx context.Context, r jobs.Request, keyer credentialKeyer, check bool, now time.Time) (string, error) {
	payload, err := sealRequest(s.o.Keyring, r, tracing.Inject(ctx))
	if err != nil {
		return "", &SubmitError{Code: CodeUnavailable, Message: "the request could not be sealed; try again", Err: err}
	}
	hasBatch := "0"
	if r.Batch != "" {
		hasBatch = "1"
	}
	credKey, checkArg := s.keys.p+"nocredential", "0" // never written
	if check {
		credKey, checkArg = keyer.CredentialKey(r.Credential), "1"
	}
	account := s.o.Account(r.Vendor, r.Credential)
	m := member(r.Vendor, r.Credential, r.Batch)
	res, err := scriptSubmit.Run(ctx, s.o.Redis,
		[]string{s.keys.request(r.ID), s.keys.queue(account, m), s.keys.ring(account), s.keys.accounts(),
			s.keys.batch(r.Vendor, r.Credential, r.Batch), credKey, s.keys.queued()},
		payload, account, m, r.Batch, now.UnixMilli(), int64(s.o.TTL/time.Second), hasBatch, r.Vendor, r.Credential, checkArg,
	).Text()
	if err != nil {
		return "", &SubmitError{Code: CodeUnavailable, Message: "the request queue is unavailable; try again", Err: err}
	}
	return res, nil
}

// validate checks r, its credential included (one read), and fills in its
// defaults; it returns r's account.
func (s *Submitter) validate(ctx context.Context, r jobs.Request, now time.Time) (jobs.Request, string, error) {
	r, err := s.check(r, now)
	if err != nil {
		return r, "", err
	}
	vendor, err := s.lookup(ctx, r)
	if err != nil {
		return r, "", err
	}
	r.Vendor, r.SubmittedAt = vendor, now.UTC()
	return r, s.o.Account(vendor, r.Credential), nil
}

// check checks r and fills in its defaults, without reading Redis.
func (s *Submitter) check(r jobs.Request, now time.Time) (jobs.Request, error) {
	if r.ID == "" {
		r.ID = uuid.NewString()
	}
	r.Method = strings.ToUpper(strings.TrimSpace(r.Method))
	switch {
	case !requestIDRE.MatchString(r.ID):
		return r, invalid("id %q must be 1 to 128 letters, digits, '.', '_' or '-'", r.ID)
	case r.Credential == "":
		return r, invalid("credential is required")
	case r.Method == "":
		return r, invalid("method is required (GET, HEAD, POST, PUT, PATCH or DELETE)")
	case !methods[r.Method]:
		return r, invalid("method %q is not one of GET, HEAD, POST, PUT, PATCH, DELETE", r.Method)
	case r.Batch != "" && !batchIDRE.MatchString(r.Batch):
		return r, invalid("batch %q must be 1 to 64 letters, digits, '_' or '-'", r.Batch)
	case len(r.IdempotencyKey) > 256:
		return r, invalid("idempotency_key is longer than 256 bytes")
	case !r.Deadline.IsZero() && !r.Deadline.After(now):
		return r, invalid("deadline %s has passed", r.Deadline.UTC().Format(time.RFC3339))
	}
	if err := checkPath(r.Path); err != nil {
		return r, err
	}
	for name, v := range r.Headers {
		switch {
		case !headerRE.MatchString(name):
			return r, invalid("header name %q is not a valid HTTP header name", name)
		case strings.ContainsAny(v, "\r\n\x00"):
			return r, invalid("header %s holds a line break or NUL", name)
		case strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "Host"):
			return r, invalid("header %s is set by tokenrelay, not by the request", name)
		}
	}
	body, err := r.BodyBytes()
	switch {
	case err != nil:
		return r, invalid("%v", err)
	case len(body) > s.o.MaxBody:
		return r, invalid("body is %d bytes, over the limit of %d", len(body), s.o.MaxBody)
	case body != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return r, invalid("a %s request has no body", r.Method)
	}
	return r, nil
}

// lookup reads r's credential: it must exist, not be revoked, be r's
// vendor's when r names one, and its vendor must be configured. It
// returns (and remembers) the credential's vendor.
func (s *Submitter) lookup(ctx context.Context, r jobs.Request) (string, error) {
	cred, err := s.o.Credentials.CurrentToken(ctx, r.Credential)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", &SubmitError{Code: CodeUnknownCredential, Message: fmt.Sprintf("no credential %q", r.Credential)}
	case err != nil:
		return "", &SubmitError{Code: CodeUnavailable, Message: "the credential store is unavailable; try again", Err: err}
	case cred.State == store.StateRevoked:
		return "", &SubmitError{Code: CodeUnknownCredential, Message: fmt.Sprintf("credential %q is revoked", r.Credential)}
	case r.Vendor != "" && r.Vendor != cred.Vendor:
		return "", invalid("credential %q belongs to vendor %q, not %q", r.Credential, cred.Vendor, r.Vendor)
	}
	if _, ok := s.o.Vendors[cred.Vendor]; !ok {
		return "", invalid("vendor %q of credential %q is not configured", cred.Vendor, r.Credential)
	}
	s.vendorOf.Store(r.Credential, cred.Vendor)
	return cred.Vendor, nil
}

// checkPath accepts a path relative to the vendor's base URL that stays
// under it.
func checkPath(p string) error {
	switch {
	case p == "":
		return invalid("path is required, relative to the vendor's base URL (like \"Patient\")")
	case strings.HasPrefix(p, "/") || strings.Contains(p, "://"):
		return invalid("path %q must be relative to the vendor's base URL (like \"Patient\"), not absolute", p)
	case strings.ContainsAny(p, "?#"):
		return invalid("path %q must not hold a query or fragment: give the query in \"query\"", p)
	case strings.ContainsAny(p, " \t\r\n\\\x00"):
		return invalid("path %q holds white space, a backslash or a control character", p)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." || seg == "." {
			return invalid("path %q must not hold \".\" or \"..\" segments", p)
		}
	}
	return nil
}
