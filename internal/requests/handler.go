package requests

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Budget is the shared rate budget of vendor accounts (package budget).
type Budget interface {
	// Take spends one request of the account's budget, or says when to
	// try again (nothing is held then).
	Take(ctx context.Context, account string, lim budget.Limit, class budget.Class) (ok bool, retryAt time.Time, err error)
	// Observe reads a vendor's answer (rate-limit headers; a 429 pauses
	// the account for every worker until the returned time).
	Observe(ctx context.Context, account string, lim budget.Limit, status int, h http.Header) (pausedUntil time.Time, err error)
	// Status is the account's budget now.
	Status(ctx context.Context, account string, lim budget.Limit) (budget.Status, error)
}

// Objects stores answer bodies too large to carry in an event
// (jetstream.ObjectStore satisfies it).
type Objects interface {
	PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error)
}

var _ Objects = jetstream.ObjectStore(nil)

// Defaults of HandlerDeps.
const (
	DefaultInlineLimit    = 64 << 10
	DefaultResponseLimit  = 32 << 20
	DefaultCallTimeout    = 30 * time.Second
	DefaultTokenMargin    = 5 * time.Second
	DefaultIdempotencyTTL = 24 * time.Hour
	DefaultBucket         = "tokenrelay-requests"
	// DefaultLimitedConcurrency is HandlerDeps.GroupConcurrency's default
	// for an account with a limit.
	DefaultLimitedConcurrency = 4
)

// maxTokenWaits bounds how often a request waits for a usable token (a
// second each) before it fails with class "credential".
const maxTokenWaits = 300

// HandlerDeps are the request handler's dependencies. Redis, Credentials,
// Refresh, Budget and Vendors are required.
type HandlerDeps struct {
	Redis redis.UniversalClient
	// Prefix is the store's key prefix (config redis.prefix): the outbox
	// and the request records live under it. Default "tokenrelay:".
	Prefix      string
	Credentials Credentials
	// Refresh runs the scheduler's fenced refresh of one generation of a
	// credential (jobs.RefreshHandler.Handle): a no-op when another worker
	// renewed it already, and never a second token call for a generation.
	Refresh func(ctx context.Context, p jobs.Refresh) error
	Budget  Budget
	// Vendors are the configured vendor instances, by name.
	Vendors map[string]config.Vendor
	// Account names the budget account of a credential; it must be the
	// Submitter's. Default AccountFor(Vendors).
	Account func(vendor, credential string) string
	// HTTPClient sends the requests (nil: a client without a timeout of its
	// own, CallTimeout bounds each call, keeping up to DefaultMaxInFlight
	// idle connections per vendor host: a feeder releases that many of an
	// account's requests at once, and a connection closed for want of room
	// is a new one for the next group).
	HTTPClient *http.Client
	// Objects holds bodies above InlineLimit, in the bucket named Bucket.
	// Nil: such bodies fail the request (class too_large).
	Objects Objects
	// Bucket is the name of Objects' bucket, for the event's reference.
	// Default DefaultBucket.
	Bucket string
	// InlineLimit is the largest answer body carried in the event. Default 64 KiB.
	InlineLimit int
	// ResponseLimit is the most of an answer body read. Default 32 MiB.
	ResponseLimit int64
	// CallTimeout bounds one vendor call. Default 30s.
	CallTimeout time.Duration
	// TokenMargin: a token closer than this to its expiry (or than a
	// quarter of its lifetime) is refreshed before use. Default 5s.
	TokenMargin time.Duration
	// IdempotencyTTL is how long an idempotency key is remembered. Default 24h.
	IdempotencyTTL time.Duration
	Metrics        *Metrics
	Logger         zerolog.Logger
	// Pages takes the outcomes of syncs' page requests (package syncs).
	// Nil: such a request fails.
	Pages Pages
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Enqueuer enqueues the task of its own of a request that leaves its
	// group to wait (group.go). Default: an asynq client on Redis.
	Enqueuer Enqueuer
	// GroupConcurrency bounds how many requests of a group are sent at
	// once. Default 0: all of them (a group is at most
	// FeederOptions.GroupSize) for an account without a limit of ours,
	// DefaultLimitedConcurrency for one with a limit, whose permits must
	// reach the vendor within the budget's slack of being handed out
	// (many sends at once on a busy machine stretch that).
	GroupConcurrency int
	// Keyring opens queued requests and seals what the handler keeps of
	// their outcomes in Redis (outbox events, idempotency records) with
	// the master key. Required; the Submitter's.
	Keyring *seal.Keyring
}

// Handler runs request tasks (see the package doc).
type Handler struct {
	d      HandlerDeps
	keys   keys
	outbox string
	send   map[string]*vendors.Sender
	// paused holds, per account, the end of the last 429's pause this
	// process met (the budget holds it for every process; this is checked
	// between a request's take and its send).
	paused sync.Map
	// runners run the requests of groups (group.go).
	runners *runners
	// media is each configured vendor's mediaType.
	media map[string]string
}

// pausedUntil is the end of the last 429's pause of account met here.
func (h *Handler) pausedUntil(account string) time.Time {
	v, _ := h.paused.Load(account)
	t, _ := v.(time.Time)
	return t
}

// hold records a 429's pause of account met here, until then: the
// requests this process sends beside it (in its group or another) check
// it before their take and again before their send.
func (h *Handler) hold(account string, until time.Time) {
	h.paused.Store(account, until)
}

// NewHandler checks d, fills its defaults and returns the handler.
func NewHandler(d HandlerDeps) (*Handler, error) {
	if d.Redis == nil || d.Credentials == nil || d.Refresh == nil || d.Budget == nil || d.Keyring == nil {
		return nil, errors.New("requests: the handler needs Redis, the credential store, the refresh, the budget and the keyring")
	}
	if d.Prefix == "" {
		d.Prefix = events.DefaultPrefix
	}
	if d.Account == nil {
		d.Account = AccountFor(d.Vendors)
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Transport: tracing.Transport(&http.Transport{MaxIdleConnsPerHost: DefaultMaxInFlight, IdleConnTimeout: 90 * time.Second})}
	}
	if d.Bucket == "" {
		d.Bucket = DefaultBucket
	}
	if d.InlineLimit <= 0 {
		d.InlineLimit = DefaultInlineLimit
	}
	if d.ResponseLimit <= 0 {
		d.ResponseLimit = DefaultResponseLimit
	}
	if d.CallTimeout <= 0 {
		d.CallTimeout = DefaultCallTimeout
	}
	if d.TokenMargin <= 0 {
		d.TokenMargin = DefaultTokenMargin
	}
	if d.IdempotencyTTL <= 0 {
		d.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Enqueuer == nil {
		d.Enqueuer = asynq.NewClientFromRedisClient(d.Redis)
	}
	h := &Handler{d: d, keys: newKeys(d.Prefix), outbox: events.OutboxKey(d.Prefix), send: map[string]*vendors.Sender{},
		runners: newRunners(), media: map[string]string{}}
	for name, v := range d.Vendors {
		h.media[name] = mediaType(v)
		h.send[name] = vendors.NewSender(name, d.HTTPClient, d.Clock, v.UserAgent)
	}
	return h, nil
}

// record is what Redis holds of a request while it runs.
type record struct {
	state     string
	refreshed int64 // generation refreshed after a 401; -1 none
	attempts  int
}

// started is one request as start.lua found it.
type started struct {
	rec       record
	cancelled bool
}

// startOne is a release to start: the request, and the feeder's release
// number its task carries it under ("" for a task of its own).
type startOne struct {
	r       jobs.Request
	release string
}

// start reads requests as this run picks them up and marks each running,
// unless it has ended, its batch is cancelled or it has moved on (state
// "moved"), or another group runs it (owner: this group's, see groupOwner;
// "" for a task of one request): one round trip for a whole group.
func (h *Handler) start(ctx context.Context, owner string, rs []startOne) ([]started, error) {
	keys := make([]string, 0, 2*len(rs))
	args := make([]any, 0, 2+2*len(rs))
	args = append(args, h.d.Clock().UnixMilli(), owner)
	for _, s := range rs {
		hasBatch := "0"
		if s.r.Batch != "" {
			hasBatch = "1"
		}
		keys = append(keys, h.keys.request(s.r.ID), h.keys.batch(s.r.Vendor, s.r.Credential, s.r.Batch))
		args = append(args, hasBatch, s.release)
	}
	vals, err := scriptStart.Run(ctx, h.d.Redis, keys, args...).Slice()
	if err != nil || len(vals) != len(rs) {
		return nil, fmt.Errorf("requests: start %d request(s) (first %s): %d answers: %w", len(rs), rs[0].r.ID, len(vals), err)
	}
	out := make([]started, len(rs))
	for i, v := range vals {
		f, _ := v.([]any)
		if len(f) != 4 {
			return nil, fmt.Errorf("requests: start request %s: unexpected answer", rs[i].r.ID)
		}
		rec := record{state: str(f[0]), refreshed: -1}
		if s := str(f[1]); s != "" {
			rec.refreshed, _ = strconv.ParseInt(s, 10, 64)
		}
		rec.attempts, _ = strconv.Atoi(str(f[2]))
		n, _ := f[3].(int64)
		out[i] = started{rec: rec, cancelled: n == 1}
	}
	return out, nil
}

// ProcessTask runs one request task (asynq.Handler, registered for
// jobs.TypeVendorRequest): its payload is a group of released requests
// (see group.go), a jobs.SealedRequest, opened with the keyring, or a
// plain jobs.Request enqueued before requests were sealed. A payload that
// does not open fails without retries.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if g, ok := decodeGroup(t.Payload()); ok {
		id, _ := asynq.GetTaskID(ctx)
		return h.handleGroup(ctx, id, g)
	}
	r, tc, err := openRequest(h.d.Keyring, t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	ctx, span := traceRun(ctx, r, tc, retried)
	err = h.Handle(ctx, r)
	endRun(span, err)
	return err
}

// Handle runs one request.
func (h *Handler) Handle(ctx context.Context, r jobs.Request) error {
	st, err := h.start(ctx, "", []startOne{{r: r}})
	if err != nil {
		return err
	}
	return h.run(ctx, r, st[0], nil)
}

// run runs one started request, alone (g nil) or in group g. What must
// wait comes back as a *jobs.RetryAt or *jobs.Transient: alone, for asynq
// to run the task again then; in a group, once the request has been handed
// to a task of its own (group.go).
func (h *Handler) run(ctx context.Context, r jobs.Request, st started, g *group) error {
	rec := st.rec
	switch rec.state {
	case "done", "failed", "cancelled", "moved":
		log := h.requestLog(r)
		log.Debug().Str("state", rec.state).Msg("request already ended or moved on; nothing to do")
		g.pass(r.ID, false)
		return nil
	}
	if g != nil {
		defer g.pass(r.ID, false) // ended before its take
	}
	account := h.d.Account(r.Vendor, r.Credential)
	if st.cancelled {
		return h.fail(ctx, r, rec, "cancelled", 0, "the batch was cancelled before the request ran")
	}
	now := h.d.Clock()
	if !r.Deadline.IsZero() && !now.Before(r.Deadline) {
		return h.fail(ctx, r, rec, "deadline", 0, "the deadline "+r.Deadline.UTC().Format(time.RFC3339)+" passed before the request could be sent")
	}
	v, ok := h.d.Vendors[r.Vendor]
	if !ok {
		return h.fail(ctx, r, rec, "invalid", 0, fmt.Sprintf("vendor %q is not configured", r.Vendor))
	}
	if r.IdempotencyKey != "" {
		if done, err := h.idempotent(ctx, r, g); done || err != nil {
			return err
		}
	}
	// One send, and one more after a 401 has brought a new token.
	for {
		cred, err := g.token(ctx, h, r, rec)
		if err != nil {
			return h.wait(ctx, r, rec, err, g)
		}
		lim := budget.LimitOf(v)
		bspan := traceBudget(ctx, account)
		ok, retryAt, err := g.take(ctx, h, account, lim)
		endBudget(bspan, ok, retryAt, h.d.Clock(), err)
		if g == nil {
			h.unpend(account, r.ID)
		} else {
			g.pass(r.ID, ok && err == nil)
		}
		if err != nil {
			return fmt.Errorf("requests: take budget of %s: %w", account, err)
		}
		if !ok {
			return h.requeue(ctx, r, rec, account, retryAt)
		}
		// A 429 met since the take (by a request sent beside this one)
		// holds this one back too: the permit is spent, the vendor spared.
		if until := h.pausedUntil(account); until.After(h.d.Clock()) {
			return h.requeue(ctx, r, rec, account, until)
		}
		rec.attempts++
		ans, callErr := h.call(ctx, r, v, cred)
		var retryAfter time.Time
		if ans.Status == http.StatusTooManyRequests {
			// Held here at once, before the budget records the pause for
			// every worker: the requests sent beside this one stop now.
			retryAfter = h.d.Clock().Add(max(vendors.ParseRetryAfter(ans.Header.Get("Retry-After"), h.d.Clock()), time.Second))
			h.hold(account, retryAfter)
		}
		if callErr == nil || callErr.Status != 0 {
			paused, err := h.d.Budget.Observe(ctx, account, lim, ans.Status, ans.Header)
			if err != nil {
				log := h.requestLog(r)
				log.Warn().Err(err).Msg("could not record the vendor's answer in the budget")
			}
			if ans.Status == http.StatusTooManyRequests {
				if paused.IsZero() {
					paused = retryAfter
				}
				h.hold(account, paused)
				h.d.Metrics.outcome(r.Vendor, OutcomeRateLimited)
				return h.wait(ctx, r, rec, &jobs.RetryAt{At: paused, Reason: "rate_limited"}, g)
			}
		}
		switch {
		case callErr != nil, ans.Status >= 500, ans.Status == http.StatusRequestTimeout:
			return h.transient(ctx, r, rec, ans, callErr, h.scrubber(ctx, cred), g)
		case ans.Status == http.StatusUnauthorized:
			if rec.refreshed >= 0 {
				return h.fail(ctx, r, rec, "unauthorized", ans.Status,
					"the vendor refused the request's token again after a refresh: "+vendorMessage(ans, h.scrubber(ctx, cred)))
			}
			rec.refreshed = cred.Generation
			if err := h.d.Redis.HSet(ctx, h.keys.request(r.ID), "refreshed", cred.Generation).Err(); err != nil {
				return fmt.Errorf("requests: record refresh of %s: %w", r.ID, err)
			}
			log := h.requestLog(r)
			log.Info().Int64("generation", cred.Generation).Msg("vendor refused the token (401); refreshing it once and retrying")
			if err := h.d.Refresh(ctx, jobs.Refresh{Credential: r.Credential, Generation: cred.Generation}); err != nil {
				return fmt.Errorf("requests: refresh %s after a 401: %w", r.Credential, err)
			}
			continue
		case ans.Status >= 400:
			return h.fail(ctx, r, rec, vendors.ClassRejected, ans.Status, vendorMessage(ans, h.scrubber(ctx, cred)))
		}
		return h.complete(ctx, r, rec, ans)
	}
}

// requestLog is the handler's logger with request r's fields. It is made
// where a line is written, not for every request: most write none.
func (h *Handler) requestLog(r jobs.Request) zerolog.Logger {
	return h.d.Logger.With().Str("request", r.ID).Str("vendor", r.Vendor).Str("credential", r.Credential).Logger()
}

// unpend tells the feeder, without holding up the request, that it is past
// its budget take; the request's next transition says it again.
func (h *Handler) unpend(account, id string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = h.d.Redis.ZRem(ctx, h.keys.pending(account), id).Err()
	}()
}

// token returns the credential with a token usable now. A token missing,
// expired, close to expiry or refused by the vendor since its refresh is
// renewed first (the scheduler's fenced refresh), and when it is still not
// usable the request waits a second for it (*RetryAt).
func (h *Handler) token(ctx context.Context, r jobs.Request, rec record) (store.Credential, error) {
	for try := 0; ; try++ {
		cred, err := h.d.Credentials.CurrentToken(ctx, r.Credential)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return cred, errFinal{class: "credential", msg: fmt.Sprintf("credential %q no longer exists", r.Credential)}
		case err != nil:
			return cred, fmt.Errorf("requests: read token of %s: %w", r.Credential, err)
		case cred.State == store.StateRevoked:
			return cred, errFinal{class: "credential", msg: fmt.Sprintf("credential %q is revoked", r.Credential)}
		}
		now := h.d.Clock()
		if h.usable(cred, rec, now) {
			return cred, nil
		}
		if try > 0 {
			return cred, &jobs.RetryAt{At: now.Add(time.Second), Reason: "token"}
		}
		if err := h.d.Refresh(ctx, jobs.Refresh{Credential: r.Credential, Generation: cred.Generation}); err != nil {
			return cred, fmt.Errorf("requests: refresh %s before use: %w", r.Credential, err)
		}
	}
}

// usable says whether cred's token may be sent now by the request rec: not
// close to its expiry, and not the generation the vendor refused it with.
func (h *Handler) usable(cred store.Credential, rec record, now time.Time) bool {
	lifetime := cred.Token.ExpiresAt.Sub(cred.Token.IssuedAt)
	margin := min(h.d.TokenMargin, lifetime/4)
	return !cred.Token.AccessToken.IsZero() && cred.Token.ExpiresAt.Sub(now) > margin && cred.Generation != rec.refreshed
}

// errFinal ends a request as failed with a class.
type errFinal struct{ class, msg string }

func (e errFinal) Error() string { return e.class + ": " + e.msg }

// wait hands the task back to asynq until a *RetryAt's time, with the
// request in the waiting state (in a group: to a task of its own, due
// then); an errFinal fails the request; any other error is returned for
// asynq to retry.
func (h *Handler) wait(ctx context.Context, r jobs.Request, rec record, err error, g *group) error {
	var final errFinal
	if errors.As(err, &final) {
		return h.fail(ctx, r, rec, final.class, 0, final.msg)
	}
	var wait *jobs.RetryAt
	if !errors.As(err, &wait) {
		return err
	}
	if wait.Reason == "token" {
		n, rerr := h.d.Redis.HIncrBy(ctx, h.keys.request(r.ID), "token_waits", 1).Result()
		if rerr == nil && n > maxTokenWaits {
			return h.fail(ctx, r, rec, "credential", 0, "no usable token for the credential after waiting for its refresh")
		}
	}
	if !r.Deadline.IsZero() && wait.At.After(r.Deadline) {
		return h.fail(ctx, r, rec, "deadline", 0, fmt.Sprintf("the request would wait (%s) until %s, after its deadline %s",
			wait.Reason, wait.At.UTC().Format(time.RFC3339), r.Deadline.UTC().Format(time.RFC3339)))
	}
	return h.park(ctx, r, rec, wait.At, wait, g)
}

// park leaves the request waiting until at, why saying for what: alone,
// its task goes back to asynq (why is the task's error); in a group, it is
// handed to a task of its own due at that time, and leaves the group.
func (h *Handler) park(ctx context.Context, r jobs.Request, rec record, at time.Time, why error, g *group) error {
	if g != nil {
		if err := g.handoff(ctx, h, r, rec, at, why); err != nil {
			return err
		}
		return why
	}
	if err := h.transition(ctx, r, rec, "waiting", nil); err != nil {
		return err
	}
	return why
}

// requeue hands the request back to the feeder when the budget has no
// permit for it now: the feeder releases it again as soon as the budget
// has room, to the millisecond, where an asynq retry would wait whole
// seconds. No worker waits, and no failure is counted.
func (h *Handler) requeue(ctx context.Context, r jobs.Request, rec record, account string, retryAt time.Time) error {
	if !r.Deadline.IsZero() && retryAt.After(r.Deadline) {
		return h.fail(ctx, r, rec, "deadline", 0, fmt.Sprintf("the budget has no room before %s, after the deadline %s",
			retryAt.UTC().Format(time.RFC3339), r.Deadline.UTC().Format(time.RFC3339)))
	}
	payload, err := sealRequest(h.d.Keyring, r, submission(ctx))
	if err != nil {
		return fmt.Errorf("requests: %w", err)
	}
	hasBatch := "0"
	if r.Batch != "" {
		hasBatch = "1"
	}
	m := member(r.Vendor, r.Credential, r.Batch)
	err = scriptRequeue.Run(ctx, h.d.Redis,
		[]string{h.keys.queue(account, m), h.keys.ring(account), h.keys.accounts(), h.keys.request(r.ID),
			h.keys.batch(r.Vendor, r.Credential, r.Batch), h.keys.pending(account)},
		payload, account, m, r.Vendor, hasBatch, r.ID).Err()
	if err != nil {
		return fmt.Errorf("requests: hand %s back to the feeder: %w", r.ID, err)
	}
	return nil
}

// transient retries a 5xx, 408, timeout or connection failure with backoff,
// or fails the request once its retries are spent.
func (h *Handler) transient(ctx context.Context, r jobs.Request, rec record, ans vendors.Answer, callErr *vendors.Error,
	sc *secret.Scrubber, g *group) error {
	class, msg := vendors.ClassServer, vendorMessage(ans, sc)
	if ans.Status == http.StatusRequestTimeout {
		class = vendors.ClassTimeout
	}
	if callErr != nil {
		class, msg = callErr.Class, sc.Scrub(callErr.Error())
	}
	// A request run in a group is on its first send: its task's retries
	// are the group's, not its own.
	retried, maxRetry := 0, jobs.RequestMaxRetry
	if g == nil {
		retried, _ = asynq.GetRetryCount(ctx)
		if n, ok := asynq.GetMaxRetry(ctx); ok {
			maxRetry = n
		}
	}
	if retried >= maxRetry {
		return h.fail(ctx, r, rec, class, ans.Status, msg)
	}
	h.d.Metrics.outcome(r.Vendor, OutcomeRetried)
	var after time.Duration
	if ans.Header != nil {
		after = vendors.ParseRetryAfter(ans.Header.Get("Retry-After"), h.d.Clock())
	}
	// asynq keeps this text in Redis (and shows it in its dashboard): it
	// names the failure, never the path, query or the vendor's words
	// (patient data); the request.failed event, sealed, quotes them.
	tr := &jobs.Transient{After: after, Err: fmt.Errorf("requests: request %s: %s (HTTP %d), retrying", r.ID, class, ans.Status)}
	at := h.d.Clock().Add(jobs.RetryDelay(retried, tr, asynq.NewTask(jobs.TypeVendorRequest, nil)))
	return h.park(ctx, r, rec, at, tr, g)
}

// call sends the request once. The *vendors.Error has a Status when an
// answer came (never for a 2xx).
func (h *Handler) call(ctx context.Context, r jobs.Request, v config.Vendor, cred store.Credential) (vendors.Answer, *vendors.Error) {
	body, _ := r.BodyBytes() // checked at submission
	callCtx, cancel := context.WithTimeout(ctx, h.d.CallTimeout)
	defer cancel()
	// The URL is parsed once, here; the query replaces any in the path.
	req, err := http.NewRequestWithContext(callCtx, r.Method, v.BaseURL+r.Path, bytes.NewReader(body))
	if err != nil {
		return vendors.Answer{}, &vendors.Error{Vendor: r.Vendor, Op: "build request", Class: "invalid", Err: err}
	}
	if len(r.Query) > 0 {
		req.URL.RawQuery = url.Values(r.Query).Encode()
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for name, val := range r.Headers {
		req.Header.Set(name, val)
	}
	media, ok := h.media[r.Vendor]
	if !ok {
		media = mediaType(v)
	}
	setVendorHeaders(req.Header, media, body != nil)
	req.Header["Authorization"] = []string{"Bearer " + cred.Token.AccessToken.Reveal()} // Set's, canonical already
	start := time.Now()
	ans, callErr := h.sender(r.Vendor).Do(req, r.Method+" "+r.Path, h.d.ResponseLimit)
	h.d.Metrics.call(r.Vendor, time.Since(start))
	if callErr != nil {
		callErr.Status = ans.Status
		return ans, callErr
	}
	return ans, nil
}

func (h *Handler) sender(vendor string) *vendors.Sender {
	if s, ok := h.send[vendor]; ok {
		return s
	}
	return vendors.NewSender(vendor, h.d.HTTPClient, h.d.Clock, "")
}

// setVendorHeaders adds what the vendor requires when the request has not
// set it: the media type of its kind (mediaType).
func setVendorHeaders(hd http.Header, media string, hasBody bool) {
	if hd.Get("Accept") == "" {
		hd["Accept"] = []string{media} // Set's, canonical already
	}
	if hasBody && hd.Get("Content-Type") == "" {
		hd["Content-Type"] = []string{media}
	}
}

// mediaType is the media type of vendor v's requests and answers: its
// kind's (FHIR servers, as Halaxy and patient portals, take and give
// application/fhir+json); JSON for the others.
func mediaType(v config.Vendor) string {
	spec, _ := v.Spec()
	return cmp.Or(spec.MediaType, "application/json")
}

// keptHeaders are the answer headers an outcome event carries.
var keptHeaders = []string{"Content-Type", "Content-Location", "Location", "ETag", "Last-Modified",
	"Retry-After", "X-Request-Id", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"}

func eventHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for _, name := range keptHeaders {
		if v := h.Get(name); v != "" {
			out[name] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// vendorMessage quotes a vendor's error answer, untrusted text, for an
// event, a log line and a task error: a bounded excerpt scrubbed of every
// spelling of sc's secrets.
func vendorMessage(ans vendors.Answer, sc *secret.Scrubber) string {
	msg := fmt.Sprintf("HTTP %d", ans.Status)
	if q := vendors.Excerpt(string(ans.Body), sc); q != "" {
		msg += ": " + vendors.VendorSaid(q)
	}
	return msg
}

// keyReader is the store's full read of a credential (store.Store.Get).
type keyReader interface {
	Get(ctx context.Context, id string) (store.Credential, error)
}

// scrubber redacts from a vendor's error answer every secret of the
// credential a request used: the token it sent and, when Credentials can
// read them (the store can), its keys, which the vendor knows too. It runs
// only on error paths: reading the keys costs a round trip and a
// decryption.
func (h *Handler) scrubber(ctx context.Context, cred store.Credential) *secret.Scrubber {
	if kr, ok := h.d.Credentials.(keyReader); ok {
		if full, err := kr.Get(ctx, cred.ID); err == nil {
			// The token sent, which a renewal may have replaced since.
			return full.Scrubber().Add(cred.Token.AccessToken)
		}
	}
	return cred.Scrubber()
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
