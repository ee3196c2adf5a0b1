package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// RefreshStore is what the refresh handler needs of the credential store.
type RefreshStore interface {
	Claim(ctx context.Context, id string, gen int64, owner string, lease time.Duration) (store.Credential, error)
	ClaimBatch(ctx context.Context, items []store.Due, owner string, lease time.Duration) ([]store.Claimed, error)
	CommitRenewal(ctx context.Context, id, owner string, gen int64, r store.Renewal, ev events.Envelope) error
	CommitRenewals(ctx context.Context, commits []store.RenewalCommit) ([]error, error)
	CommitFailure(ctx context.Context, id, owner string, gen int64, f store.Failure, evs ...events.Envelope) error
	Release(ctx context.Context, id, owner string, retryAt time.Time) error
}

// Vendor is one configured vendor instance as the refresh handler sees it.
type Vendor struct {
	// Tokens gets tokens from the vendor.
	Tokens vendors.TokenSource
	// MaxLifetime caps the lifetime the vendor claims; 0 means no cap.
	MaxLifetime time.Duration
	// Renewal says when in a token's life to renew it.
	Renewal policy.Renewal
}

// RefreshDeps are the refresh handler's dependencies.
type RefreshDeps struct {
	Store RefreshStore
	// Vendor looks up a vendor instance by its configured name.
	Vendor func(name string) (Vendor, bool)
	// Logger receives one line per outcome; never a secret.
	Logger zerolog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Rand returns a number in [0, 1) for jitter; defaults to math/rand.
	Rand func() float64
	// ClaimLease is how long a worker holds a credential while it calls
	// the vendor (default 10s); the vendor call is bounded by it.
	ClaimLease time.Duration
	// BackoffBase and MaxBackoff shape the retry backoff (defaults 1s, 5m).
	BackoffBase, MaxBackoff time.Duration
	// MaxRetryAfter caps a vendor's Retry-After (default 10m).
	MaxRetryAfter time.Duration
	// BatchParallel is how many renewals of batches run at once in this
	// worker, across all its batch tasks (default 64).
	BatchParallel int
	// CommitBackoffBase and CommitMaxBackoff shape the retries of a commit
	// of an issued token while the store cannot be reached (defaults 50ms
	// and 1s: short, so that the commit lands soon after Redis is back,
	// before the credential's claim can be taken over).
	CommitBackoffBase, CommitMaxBackoff time.Duration
	// Spool keeps the issued tokens still uncommitted when the handler is
	// stopped, for CommitSpooled to commit at the next start. Nil: such a
	// token is abandoned at shutdown.
	Spool Spool
	// Abandoned, if set, counts each issued token given up on, by vendor
	// and reason (AbandonExpired, AbandonShutdown).
	Abandoned func(vendor, reason string)
}

// Reasons an issued token is abandoned, as passed to RefreshDeps.Abandoned.
const (
	// AbandonExpired: the token expired before the store could take it.
	AbandonExpired = "expired"
	// AbandonShutdown: the worker stopped and the token could not be spooled.
	AbandonShutdown = "shutdown"
)

// RefreshHandler renews tokens. It calls the token endpoint exactly once per
// renewal however many workers run: the store's claim on (credential,
// generation) fences the call, and the commit of the new token, the bumped
// generation, the next refresh time and the event is one atomic step.
type RefreshHandler struct {
	d        RefreshDeps
	slots    chan struct{} // bounds the renewals of batches running at once
	stopping chan struct{} // closed by Stop
	stopOnce sync.Once
}

// NewRefreshHandler fills the defaults of d and returns the handler.
func NewRefreshHandler(d RefreshDeps) (*RefreshHandler, error) {
	if d.Store == nil || d.Vendor == nil {
		return nil, errors.New("jobs: refresh handler needs a store and a vendor lookup")
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Rand == nil {
		d.Rand = rand.Float64
	}
	if d.ClaimLease <= 0 {
		d.ClaimLease = 10 * time.Second
	}
	if d.BackoffBase <= 0 {
		d.BackoffBase = time.Second
	}
	if d.MaxBackoff <= 0 {
		d.MaxBackoff = policy.DefaultMaxBackoff
	}
	if d.MaxRetryAfter <= 0 {
		d.MaxRetryAfter = policy.DefaultMaxRetryAfter
	}
	if d.BatchParallel <= 0 {
		d.BatchParallel = 64
	}
	if d.CommitBackoffBase <= 0 {
		d.CommitBackoffBase = 50 * time.Millisecond
	}
	if d.CommitMaxBackoff <= 0 {
		d.CommitMaxBackoff = time.Second
	}
	return &RefreshHandler{d: d, slots: make(chan struct{}, d.BatchParallel), stopping: make(chan struct{})}, nil
}

// Stop tells the handler that the worker is shutting down: a token waiting
// for the store is spooled (or abandoned without a spool) instead of
// retried. Call it before the asynq server's Shutdown.
func (h *RefreshHandler) Stop() {
	h.stopOnce.Do(func() { close(h.stopping) })
}

// HandleBatch renews the credentials of a batch: it claims them all in one
// store call, calls their vendors side by side (at most
// RefreshDeps.BatchParallel calls at once across the worker), and commits
// the new tokens together, in one store call where they come in together
// (a renewal waits at most commitLinger for the others of its batch). Each
// credential is fenced and committed on its own, as Handle does it. A token
// issued is kept until stored (see commitRenewals). It returns the errors
// of the claims and failures that could not reach the store; asynq then
// retries the batch, and the renewals already done are no-ops.
func (h *RefreshHandler) HandleBatch(ctx context.Context, b RefreshBatch) error {
	if len(b.Items) == 0 {
		return nil
	}
	items := make([]store.Due, len(b.Items))
	for i, it := range b.Items {
		items[i] = store.Due{ID: it.Credential, Generation: it.Generation}
	}
	owner := uuid.NewString()
	deadline := h.callDeadline()
	claims, err := h.d.Store.ClaimBatch(ctx, items, owner, h.d.ClaimLease)
	if err != nil {
		h.unreplicated(items, err)
		return fmt.Errorf("jobs: claim batch: %w", err)
	}
	results := make(chan batchResult, len(claims))
	started := 0
	var errs []error
	for i, c := range claims {
		if err := h.skip(items[i], c.Err); err != nil || c.Err != nil {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		started++
		go func() {
			var r batchResult
			ictx, span := traceRefresh(ctx, b.Items[i])
			select {
			case h.slots <- struct{}{}:
				r = h.renewOne(ictx, c.Credential, owner, deadline)
				<-h.slots
			case <-ctx.Done():
				r.err = h.release(c.Credential, owner, ctx.Err())
			}
			r.traced(span)
			results <- r
		}()
	}

	// Commit the renewals as they come in: all of them at once when the
	// vendor calls end together, as they usually do; a slow call does not
	// hold the others back longer than commitLinger.
	var (
		pending []pendingRenewal
		linger  <-chan time.Time
		timer   *time.Timer
	)
	flush := func() {
		if timer != nil {
			timer.Stop()
			timer, linger = nil, nil
		}
		if len(pending) > 0 {
			h.commitRenewals(ctx, pending)
			pending = pending[:0]
		}
	}
	for got := 0; got < started; {
		select {
		case r := <-results:
			got++
			if r.err != nil {
				errs = append(errs, r.err)
			}
			if r.renewal != nil {
				pending = append(pending, *r.renewal)
				if timer == nil && got < started {
					timer = time.NewTimer(commitLinger)
					linger = timer.C
				}
			}
		case <-linger:
			flush()
		}
	}
	flush()
	return errors.Join(errs...)
}

// commitLinger is how long the renewals of a batch whose tokens have come
// wait for the rest of the batch before they are committed without them.
const commitLinger = 100 * time.Millisecond

// batchResult is what one renewal of a batch ends with: a renewal to
// commit, or the error to hand to asynq, or neither (a failure recorded, a
// renewal with nothing left to do).
type batchResult struct {
	renewal *pendingRenewal
	err     error
}

// traced hands the renewal's span to the renewal still to commit, or ends
// it with the result.
func (r batchResult) traced(span trace.Span) {
	if r.renewal != nil {
		r.renewal.span = span
		return
	}
	tracing.Fail(span, r.err)
	span.End()
}

// traceRefresh starts the worker's span of one renewal: a child of the
// scheduler's enqueue span (carried in the task), on every attempt asynq
// makes, never of an earlier attempt.
func traceRefresh(ctx context.Context, it Refresh) (context.Context, trace.Span) {
	ctx, span := tracing.Start(it.Trace.Extract(ctx), "jobs.refresh", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		retried, _ := asynq.GetRetryCount(ctx)
		span.SetAttributes(tracing.AttrCredential.String(it.Credential), tracing.AttrGeneration.Int64(it.Generation),
			attribute.Int("asynq.retry_count", retried))
	}
	return ctx, span
}

// commitTries is how often the commit of a failure is tried when Redis
// fails, before the task is handed back to asynq. Issued tokens are not
// bound by it: see commitRenewals.
const commitTries = 5

// Handle runs one refresh task. It returns an error only when the store
// cannot be reached; every vendor outcome is recorded and scheduled by the
// store, and the task ends.
func (h *RefreshHandler) Handle(ctx context.Context, p Refresh) error {
	owner := uuid.NewString()
	deadline := h.callDeadline()
	cred, err := h.d.Store.Claim(ctx, p.Credential, p.Generation, owner, h.d.ClaimLease)
	if err != nil {
		return h.skip(store.Due{ID: p.Credential, Generation: p.Generation}, err)
	}
	ictx, span := traceRefresh(ctx, p)
	r := h.renewOne(ictx, cred, owner, deadline)
	r.traced(span)
	if r.renewal == nil {
		return r.err
	}
	h.commitRenewals(ctx, []pendingRenewal{*r.renewal})
	return nil
}

// skip says what a refused claim means: nil when there is nothing to do
// (stale, gone, or another worker on it), an error when the store could not
// be asked. A nil claimErr is nil.
func (h *RefreshHandler) skip(it store.Due, claimErr error) error {
	var busy *store.BusyError
	switch {
	case claimErr == nil:
		return nil
	case errors.Is(claimErr, store.ErrNotFound), errors.Is(claimErr, store.ErrStale):
		h.d.Logger.Debug().Str("credential", it.ID).Int64("generation", it.Generation).Err(claimErr).
			Msg("refresh task is stale; nothing to do")
		return nil
	case errors.As(claimErr, &busy):
		// Another worker is on it; if it dies, the scheduler's lease on the
		// due entry brings the credential back.
		h.d.Logger.Debug().Str("credential", it.ID).Int64("generation", it.Generation).Time("claim_until", busy.Until).
			Msg("refresh already in progress elsewhere")
		return nil
	default:
		h.unreplicated([]store.Due{it}, claimErr)
		return fmt.Errorf("jobs: claim %s: %w", it.ID, claimErr)
	}
}

// unreplicated logs a claim that too few Redis replicas acknowledged
// (redis.min_replica_acks): a failover could lose it, so the vendor is not
// called on it; the renewal is tried again once the claim's lease ends.
func (h *RefreshHandler) unreplicated(items []store.Due, claimErr error) {
	if !errors.Is(claimErr, store.ErrNotReplicated) {
		return
	}
	for _, it := range items {
		h.d.Logger.Warn().Str("credential", it.ID).Int64("generation", it.Generation).Err(claimErr).
			Msg("claim not acknowledged by enough Redis replicas; vendor not called, renewal put off until the claim ends")
	}
}

// callDeadline is when a vendor call for a claim taken now must end: well
// within the claim, so that no other worker can take the credential over
// while the call is in flight.
func (h *RefreshHandler) callDeadline() time.Time {
	return time.Now().Add(h.d.ClaimLease - h.d.ClaimLease/5)
}

// renewOne calls the vendor for a claimed credential, provided the call can
// end by deadline. A failure is recorded at once; a token comes back as a
// renewal to commit.
func (h *RefreshHandler) renewOne(ctx context.Context, cred store.Credential, owner string, deadline time.Time) batchResult {
	log := h.d.Logger.With().Ctx(ctx).Str("credential", cred.ID).Int64("generation", cred.Generation).Str("vendor", cred.Vendor).Logger()
	if ctx.Err() != nil {
		// Shutting down before the vendor was called: hand the credential back.
		return batchResult{err: h.release(cred, owner, ctx.Err())}
	}
	if time.Until(deadline) < h.d.ClaimLease/5 {
		// Waited so long for a turn (a batch behind slow vendor calls) that
		// the call might outlive the claim: hand the credential back; it is
		// due again at once.
		log.Warn().Msg("claim too close to its end to call the vendor; released")
		if err := h.release(cred, owner, nil); err != nil {
			return batchResult{err: err}
		}
		return batchResult{}
	}
	v, ok := h.d.Vendor(cred.Vendor)
	if !ok {
		return batchResult{err: h.fail(log, cred, owner, &vendors.Error{Vendor: cred.Vendor, Op: "look up vendor", Class: "config",
			Err: fmt.Errorf("vendor %q is not configured", cred.Vendor)})}
	}

	// The vendor call is not cut short by a worker shutdown: a token the
	// vendor has issued must be stored, or the next attempt would be a
	// second token call for this renewal. It is bounded by the claim.
	callCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	callCtx, span := tracing.Start(callCtx, "vendor.token", trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrVendor.String(cred.Vendor))
	}
	tok, err := v.Tokens.Token(callCtx, vendors.Credential{
		ID: cred.ID, ClientID: cred.ClientID, ClientSecret: cred.ClientSecret, PrivateKey: cred.PrivateKey,
		KeyID: cred.KeyID, APIKey: cred.APIKey, RefreshToken: refreshToken(cred),
	})
	if err != nil {
		// The span gets what the store would: the vendor's words scrubbed of
		// every spelling of this credential's secrets (see fail).
		tracing.Fail(span, errors.New(cred.Scrubber().Scrub(err.Error())))
	}
	span.End()
	cancel()
	if err != nil {
		return batchResult{err: h.fail(log, cred, owner, err)}
	}
	p, err := h.renewal(log, cred, owner, v, tok)
	if err != nil {
		return batchResult{err: err}
	}
	return batchResult{renewal: &p}
}

// renewal is what committing a token means: the new generation, its expiry
// and next refresh, and its token.renewed event.
func (h *RefreshHandler) renewal(log zerolog.Logger, cred store.Credential, owner string, v Vendor, tok vendors.Token) (pendingRenewal, error) {
	now := h.d.Clock()
	issued := tok.IssuedAt
	if issued.IsZero() {
		issued = now
	}
	lifetime := policy.EffectiveLifetime(tok.ClaimedLifetime, v.MaxLifetime)
	expires := issued.Add(lifetime)
	next := v.Renewal.Time(issued, lifetime, h.d.Rand())
	recovered := cred.Failures > 0
	ev, err := events.New(events.TypeTokenRenewed, cred.Vendor, cred.ID, now, events.TokenRenewed{
		Vendor: cred.Vendor, Credential: cred.ID, Generation: cred.Generation + 1,
		IssuedAt: issued.UTC(), ExpiresAt: expires.UTC(),
		Fingerprint: tok.AccessToken.Fingerprint(), Recovered: recovered,
		PreviousExpiresAt: cred.Token.ExpiresAt.UTC(), // zero before the first token: left out
	})
	if err != nil {
		return pendingRenewal{}, err
	}
	return pendingRenewal{
		log: log,
		commit: store.RenewalCommit{
			ID: cred.ID, Owner: owner, Vendor: cred.Vendor, Generation: cred.Generation, Event: ev,
			Renewal: store.Renewal{
				Token: store.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, IssuedAt: issued,
					ExpiresAt: expires, RefreshToken: tok.RefreshToken},
				NextRefresh: next,
			},
		},
		lifetime:  lifetime,
		recovered: recovered,
	}, nil
}

func (h *RefreshHandler) fail(log zerolog.Logger, cred store.Credential, owner string, callErr error) error {
	now := h.d.Clock()
	class := vendors.Classify(callErr)
	// The adapter quotes the vendor scrubbed already; this is the last
	// line of defence before the message reaches the store (last_error),
	// the events and the log.
	msg := cred.Scrubber().Scrub(callErr.Error())
	var (
		f   store.Failure
		evs []events.Envelope
	)
	if vendors.IsRevoked(callErr) {
		f = store.Failure{State: store.StateRevoked, Class: class, Message: msg}
		ev, err := events.New(events.TypeKeyRevoked, cred.Vendor, cred.ID, now, events.KeyRevoked{
			Vendor: cred.Vendor, Credential: cred.ID, Generation: cred.Generation,
			Reason: events.ReasonRevokedByVendor, KeyFingerprint: cred.KeyFingerprint(), Message: msg,
		})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	} else {
		attempt := cred.Failures + 1
		expires := cred.Token.ExpiresAt
		state := store.StateFailing
		if !expires.IsZero() && !now.Before(expires) {
			state = store.StateExpired
		}
		backoff := policy.Backoff(attempt, h.d.BackoffBase, h.d.MaxBackoff, h.d.Rand())
		retryAt := policy.RetryTime(now, expires, backoff, vendors.RetryAfter(callErr), h.d.MaxRetryAfter)
		f = store.Failure{State: state, Class: class, Message: msg, RetryAt: retryAt}
		if state == store.StateExpired && cred.StateBeforeClaim != store.StateExpired {
			ev, err := events.New(events.TypeTokenExpired, cred.Vendor, cred.ID, now, events.TokenExpired{
				Vendor: cred.Vendor, Credential: cred.ID, Generation: cred.Generation, ExpiredAt: expires.UTC(),
			})
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		ev, err := events.New(events.TypeTokenRefreshFailed, cred.Vendor, cred.ID, now, events.TokenRefreshFailed{
			Vendor: cred.Vendor, Credential: cred.ID, Generation: cred.Generation, Class: class, Message: msg,
			Attempt: attempt, State: string(state), RetryAt: retryAt.UTC(), ExpiresAt: expires.UTC(),
		})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	err := h.commit(func(ctx context.Context) error {
		return h.d.Store.CommitFailure(ctx, cred.ID, owner, cred.Generation, f, evs...)
	})
	if errors.Is(err, store.ErrStale) {
		log.Warn().Str("error_class", class).Msg("refresh failed after the claim was taken over; not recorded")
		return nil
	}
	if err != nil {
		return fmt.Errorf("jobs: store refresh failure of %s: %w", cred.ID, err)
	}
	if f.State == store.StateRevoked {
		log.Warn().Str("error_class", class).Str("error", msg).Msg("credential revoked by vendor; no longer scheduled")
	} else {
		log.Warn().Str("error_class", class).Str("error", msg).Str("state", string(f.State)).
			Int("attempt", cred.Failures+1).Time("retry_at", f.RetryAt).Msg("token refresh failed")
	}
	return nil
}

func (h *RefreshHandler) release(cred store.Credential, owner string, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.d.Store.Release(ctx, cred.ID, owner, h.d.Clock()); err != nil {
		if cause == nil {
			return fmt.Errorf("jobs: release %s: %w", cred.ID, err)
		}
		return fmt.Errorf("jobs: release %s: %w (after %w)", cred.ID, err, cause)
	}
	return cause
}

// commit runs a store commit, retrying briefly on errors other than
// ErrStale: it survives a worker shutdown and a short Redis blip.
func (h *RefreshHandler) commit(fn func(ctx context.Context) error) error {
	var err error
	for try := 1; try <= commitTries; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = fn(ctx)
		cancel()
		if err == nil || errors.Is(err, store.ErrStale) {
			return err
		}
		time.Sleep(time.Duration(try) * 100 * time.Millisecond)
	}
	return err
}

// refreshToken is what a renewal redeems: the refresh token the vendor
// returned last, or else the one the delegation was granted with.
func refreshToken(cred store.Credential) secret.Value {
	if !cred.Token.RefreshToken.IsZero() {
		return cred.Token.RefreshToken
	}
	return cred.Keys.RefreshToken
}
