package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/policy"
	"github.com/tokenrelay/tokenrelay/store"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// RefreshStore is what the refresh handler needs of the credential store.
type RefreshStore interface {
	Claim(ctx context.Context, id string, gen int64, owner string, lease time.Duration) (store.Credential, error)
	CommitRenewal(ctx context.Context, id, owner string, gen int64, r store.Renewal, ev events.Envelope) error
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
}

// RefreshHandler renews tokens. It calls the token endpoint exactly once per
// renewal however many workers run: the store's claim on (credential,
// generation) fences the call, and the commit of the new token, the bumped
// generation, the next refresh time and the event is one atomic step.
type RefreshHandler struct {
	d     RefreshDeps
	slots chan struct{} // bounds the renewals of batches running at once
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
	return &RefreshHandler{d: d, slots: make(chan struct{}, d.BatchParallel)}, nil
}

// HandleBatch runs the renewals of a batch side by side (at most
// RefreshDeps.BatchParallel at once across the worker) and returns the
// errors of those that could not reach the store; asynq then retries the
// batch, and the renewals already done are no-ops.
func (h *RefreshHandler) HandleBatch(ctx context.Context, b RefreshBatch) error {
	errs := make([]error, len(b.Items))
	var wg sync.WaitGroup
	for i, item := range b.Items {
		select {
		case h.slots <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-h.slots; wg.Done() }()
			errs[i] = h.Handle(ctx, item)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// commitTries is how often a commit is tried when Redis fails, before the
// task is handed back to asynq: the token has been fetched, and giving up on
// storing it would mean a second token call.
const commitTries = 5

// Handle runs one refresh task. It returns an error only when the store
// cannot be reached; every vendor outcome is recorded and scheduled by the
// store, and the task ends.
func (h *RefreshHandler) Handle(ctx context.Context, p Refresh) error {
	log := h.d.Logger.With().Str("credential", p.Credential).Int64("generation", p.Generation).Logger()
	owner := uuid.NewString()
	cred, err := h.d.Store.Claim(ctx, p.Credential, p.Generation, owner, h.d.ClaimLease)
	var busy *store.BusyError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrStale):
		log.Debug().Err(err).Msg("refresh task is stale; nothing to do")
		return nil
	case errors.As(err, &busy):
		// Another worker is on it; if it dies, the scheduler's lease on the
		// due entry brings the credential back.
		log.Debug().Time("claim_until", busy.Until).Msg("refresh already in progress elsewhere")
		return nil
	case err != nil:
		return fmt.Errorf("jobs: claim %s: %w", p.Credential, err)
	}
	log = log.With().Str("vendor", cred.Vendor).Logger()

	if ctx.Err() != nil {
		// Shutting down before the vendor was called: hand the credential back.
		return h.release(cred, owner, ctx.Err())
	}
	v, ok := h.d.Vendor(cred.Vendor)
	if !ok {
		return h.fail(log, cred, owner, &vendors.Error{Vendor: cred.Vendor, Op: "look up vendor", Class: "config",
			Err: fmt.Errorf("vendor %q is not configured", cred.Vendor)})
	}

	// The vendor call is not cut short by a worker shutdown: a token the
	// vendor has issued must be stored, or the next attempt would be a
	// second token call for this renewal. It is bounded by the claim.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.d.ClaimLease-h.d.ClaimLease/5)
	tok, err := v.Tokens.Token(callCtx, vendors.Credential{
		ID: cred.ID, ClientID: cred.ClientID, ClientSecret: cred.ClientSecret, PrivateKey: cred.PrivateKey,
		KeyID: cred.KeyID, APIKey: cred.APIKey, RefreshToken: cred.Token.RefreshToken,
	})
	cancel()
	if err != nil {
		return h.fail(log, cred, owner, err)
	}
	return h.renewed(log, cred, owner, v, tok)
}

func (h *RefreshHandler) renewed(log zerolog.Logger, cred store.Credential, owner string, v Vendor, tok vendors.Token) error {
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
	})
	if err != nil {
		return err
	}
	renewal := store.Renewal{
		Token: store.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, IssuedAt: issued,
			ExpiresAt: expires, RefreshToken: tok.RefreshToken},
		NextRefresh: next,
	}
	err = h.commit(func(ctx context.Context) error {
		return h.d.Store.CommitRenewal(ctx, cred.ID, owner, cred.Generation, renewal, ev)
	})
	if errors.Is(err, store.ErrStale) {
		log.Warn().Msg("claim was taken over while the vendor answered; the new token is discarded")
		return nil
	}
	if err != nil {
		return fmt.Errorf("jobs: store renewal of %s: %w", cred.ID, err)
	}
	log.Info().Int64("new_generation", cred.Generation+1).Dur("lifetime", lifetime).
		Time("expires_at", expires).Time("next_refresh", next).Bool("recovered", recovered).Msg("token renewed")
	return nil
}

func (h *RefreshHandler) fail(log zerolog.Logger, cred store.Credential, owner string, callErr error) error {
	now := h.d.Clock()
	class := vendors.Classify(callErr)
	msg := callErr.Error()
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
