package jobs

// The commit of issued tokens: a renewal waits here, with its spans, until
// the store has it, the token expires, or the worker stops and spools it.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// pendingRenewal is a token obtained, waiting to be committed.
type pendingRenewal struct {
	log       zerolog.Logger
	commit    store.RenewalCommit
	lifetime  time.Duration
	recovered bool
	// span is the renewal's jobs.refresh span and commitSpan its
	// store.commit span, ended when the renewal settles (nil for a
	// renewal read back from the spool).
	span, commitSpan trace.Span
}

// startCommit starts p's store.commit span, once, and stamps the
// renewal's event with it, so that the event's publish (however late)
// belongs to the renewal's trace.
func (p *pendingRenewal) startCommit() {
	if p.span == nil || p.commitSpan != nil {
		return
	}
	ctx, span := tracing.Start(trace.ContextWithSpan(context.Background(), p.span), "store.commit")
	p.commitSpan = span
	p.commit.Event = p.commit.Event.Traced(ctx)
}

// settle ends p's spans, recording err.
func (p pendingRenewal) settle(err error) {
	for _, span := range []trace.Span{p.commitSpan, p.span} {
		if span != nil {
			tracing.Fail(span, err)
			span.End()
		}
	}
}

// commitRenewals commits tokens in one store call and logs each outcome.
// An issued token is never dropped while it may still be stored: the
// commit is retried with a capped backoff for as long as the store cannot
// be reached (a Redis restart, a failover), until it is committed, refused
// as stale (another claim or generation won: nothing to keep), or the token
// itself has expired (abandoned: an error line and RefreshDeps.Abandoned).
// When ctx ends or the handler is stopped, what is left goes to the spool.
//
// The claim is not extended meanwhile, and need not be: the commit is
// fenced by the claim's owner and generation, not by its end, so it lands
// whenever it reaches Redis unless another worker has claimed the
// credential since. While Redis is away nobody can; once it is back the
// next try comes within CommitMaxBackoff, well before a rival's claim can
// go through the scheduler's lease, the queue and a worker.
func (h *RefreshHandler) commitRenewals(ctx context.Context, ps []pendingRenewal) {
	if left := h.retryCommits(ctx, ps, h.stopping); len(left) > 0 {
		h.spool(left)
	}
}

// retryCommits is commitRenewals' loop. It returns the renewals still
// uncommitted when ctx ends or stop is closed, nil once all are settled.
func (h *RefreshHandler) retryCommits(ctx context.Context, ps []pendingRenewal, stop <-chan struct{}) []pendingRenewal {
	for attempt := 1; ; attempt++ {
		ps = h.live(ps)
		if len(ps) == 0 {
			return nil
		}
		for i := range ps {
			ps[i].startCommit()
		}
		commits := make([]store.RenewalCommit, len(ps))
		for i, p := range ps {
			commits[i] = p.commit
		}
		tryCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		results, err := h.d.Store.CommitRenewals(tryCtx, commits)
		cancel()
		if err == nil {
			for i, p := range ps {
				h.committed(p, results[i])
			}
			return nil
		}
		if attempt == 1 {
			for _, p := range ps {
				p.log.Warn().Err(err).Msg("store unreachable with an issued token; retrying its commit")
			}
		}
		t := time.NewTimer(policy.Backoff(attempt, h.d.CommitBackoffBase, h.d.CommitMaxBackoff, h.d.Rand()))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ps
		case <-stop:
			t.Stop()
			return ps
		}
	}
}

// live drops from ps, as abandoned, the tokens that have expired.
func (h *RefreshHandler) live(ps []pendingRenewal) []pendingRenewal {
	now := h.d.Clock()
	out := ps[:0]
	for _, p := range ps {
		if now.Before(p.commit.Renewal.Token.ExpiresAt) {
			out = append(out, p)
			continue
		}
		h.abandon(p, AbandonExpired)
	}
	return out
}

// committed logs the store's answer to one commit.
func (h *RefreshHandler) committed(p pendingRenewal, err error) {
	p.settle(err)
	c := p.commit
	switch {
	case errors.Is(err, store.ErrStale):
		p.log.Debug().Msg("claim was taken over while the token waited to be stored; the new token is discarded")
	case err != nil:
		p.log.Warn().Err(err).Msg("credential gone while its token waited to be stored; the new token is discarded")
	default:
		p.log.Info().Int64("new_generation", c.Generation+1).Dur("lifetime", p.lifetime).
			Time("expires_at", c.Renewal.Token.ExpiresAt).Time("next_refresh", c.Renewal.NextRefresh).
			Bool("recovered", p.recovered).Msg("token renewed")
	}
}

// abandon gives up on an issued token: an error line naming the
// credential, generation and token fingerprint (never the token), and the
// metric. When the answer carried a new refresh token, the stored one was
// consumed by the call: the next renewal is refused, and recovers only
// where the adapter can authenticate again with the stored key (Redox
// legacy in refresh mode does); elsewhere (HealthSync delegations) the
// refusal is reported as key.revoked. The line says so.
func (h *RefreshHandler) abandon(p pendingRenewal, reason string) {
	p.settle(fmt.Errorf("issued token abandoned: %s", reason))
	c := p.commit
	p.log.Error().Str("token_fingerprint", c.Renewal.Token.AccessToken.Fingerprint()).Str("reason", reason).
		Time("expires_at", c.Renewal.Token.ExpiresAt).Bool("refresh_token_lost", !c.Renewal.Token.RefreshToken.IsZero()).
		Msg("issued token abandoned: it could not be stored")
	if h.d.Abandoned != nil {
		h.d.Abandoned(c.Vendor, reason)
	}
}

// spool keeps the tokens still uncommitted at shutdown in the spool, or
// abandons them when there is none or it fails.
func (h *RefreshHandler) spool(ps []pendingRenewal) {
	for _, p := range ps {
		if h.d.Spool == nil {
			h.abandon(p, AbandonShutdown)
			continue
		}
		if err := h.d.Spool.Put(Spooled{Commit: p.commit, Lifetime: p.lifetime, Recovered: p.recovered}); err != nil {
			p.log.Error().Err(err).Msg("cannot spool an issued token")
			h.abandon(p, AbandonShutdown)
			continue
		}
		p.settle(nil)
		p.log.Warn().Msg("worker stopping with an issued token not yet stored; spooled for the next start")
	}
}
