package store

// Commits: what a worker that holds a claim records at the end of a
// refresh (commit_renewal.lua, commit_failure.lua), or gives back
// (release.lua).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/secret"
)

// CommitRenewal records the token a refresh obtained, provided owner still
// holds the claim on generation gen (else ErrStale, also when the credential
// is gone, and nothing is written): the generation becomes gen+1, the state active, the failure
// count 0, the claim is cleared, the next refresh is scheduled at
// r.NextRefresh, and ev is appended to the outbox, all in one atomic step.
// A zero r.Token.RefreshToken keeps the one stored.
func (s *Store) CommitRenewal(ctx context.Context, id, owner string, gen int64, r Renewal, ev events.Envelope) error {
	errs, err := s.CommitRenewals(ctx, []RenewalCommit{{ID: id, Owner: owner, Generation: gen, Renewal: r, Event: ev}})
	if err != nil {
		return fmt.Errorf("store: commit renewal %s: %w", id, err)
	}
	return errs[0]
}

// RenewalCommit is one renewal for CommitRenewals: the arguments of
// CommitRenewal.
type RenewalCommit struct {
	ID    string
	Owner string
	// Vendor is the credential's vendor, as the claim returned it: the
	// tokens are sealed bound to it, and the commit is stale if it changed.
	// Empty: read from the store (one more round trip).
	Vendor string
	// Generation is the claimed generation; it becomes Generation+1.
	Generation int64
	Renewal    Renewal
	Event      events.Envelope
}

// CommitRenewals is CommitRenewal for several renewals in one round trip and
// one script: each is fenced and written on its own, atomically with its
// event, exactly as CommitRenewal does it. The result has one element per
// renewal, in order: nil when it was committed, else CommitRenewal's error
// (one that is invalid, such as an empty access token, is not sent). The
// error is for the call as a whole (Redis could not be reached): nothing
// may be assumed written, nor not written; a retry of a renewal that was
// written finds it stale.
func (s *Store) CommitRenewals(ctx context.Context, commits []RenewalCommit) ([]error, error) {
	errs := make([]error, len(commits))
	commits, err := s.fillVendors(ctx, commits)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 2, 2+len(commits))
	keys[0], keys[1] = s.due, s.outbox
	args := make([]any, 1, 1+15*len(commits))
	args[0] = ms(s.now())
	sent := make([]int, 0, len(commits)) // index in commits of each renewal sent
	for i, c := range commits {
		a, err := s.renewalArgs(c)
		if err != nil {
			errs[i] = fmt.Errorf("store: commit renewal %s: %w", c.ID, err)
			continue
		}
		keys = append(keys, s.credKey(c.ID))
		args = append(args, a...)
		sent = append(sent, i)
	}
	if len(sent) == 0 {
		return errs, nil
	}
	replies, err := s.runAcked(ctx, opCommitRenewal, scriptCommitRenewal, keys, args...).Slice()
	if err != nil {
		return nil, err
	}
	if len(replies) != len(sent) {
		return nil, fmt.Errorf("commit script answered %d replies for %d renewals", len(replies), len(sent))
	}
	for j, i := range sent {
		if status := str(replies[j]); status != replyOK {
			errs[i] = commitRefusal("commit renewal", commits[i].ID, status)
		}
	}
	return errs, nil
}

// fillVendors returns commits with the vendor of those that do not name
// it read from the store (a copy: the caller's slice is left alone).
func (s *Store) fillVendors(ctx context.Context, commits []RenewalCommit) ([]RenewalCommit, error) {
	var ids []string
	for _, c := range commits {
		if c.Vendor == "" {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return commits, nil
	}
	vendors, err := s.vendorsOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	commits = slices.Clone(commits)
	for i := range commits {
		if commits[i].Vendor == "" {
			commits[i].Vendor, vendors = vendors[0], vendors[1:]
		}
	}
	return commits, nil
}

// renewalArgs are the 15 script arguments of one renewal (see
// lua/commit_renewal.lua).
func (s *Store) renewalArgs(c RenewalCommit) ([]any, error) {
	r := c.Renewal
	if r.Token.AccessToken.IsZero() {
		return nil, errors.New("access token is empty")
	}
	if r.NextRefresh.IsZero() {
		return nil, errors.New("next refresh time is zero")
	}
	evJSON, err := events.MarshalEnvelope(c.Event)
	if err != nil {
		return nil, err
	}
	access, err := s.seal(c.ID, c.Vendor, fAccessToken, r.Token.AccessToken)
	if err != nil {
		return nil, err
	}
	refresh, err := s.seal(c.ID, c.Vendor, fRefreshToken, r.Token.RefreshToken)
	if err != nil {
		return nil, err
	}
	return []any{
		c.ID, c.Owner, c.Generation, c.Generation + 1, c.Vendor, access, r.Token.TokenType,
		ms(r.Token.IssuedAt), ms(r.Token.ExpiresAt), refresh,
		ms(r.NextRefresh), c.Event.ID, c.Event.Subject, string(evJSON), renewalTrace(c.Event),
	}, nil
}

// renewalTrace is the traceparent kept with a renewal's token: its event's
// (the renewal's store.commit span), when that renewal was sampled. An
// unsampled renewal's trace is in no backend, so it is not worth its 55
// bytes per credential.
func renewalTrace(ev events.Envelope) string {
	if !ev.Trace().Sampled() {
		return ""
	}
	return ev.TraceParent
}

// CommitFailure records a failed refresh, provided owner still holds the
// claim on generation gen (else ErrStale, also when the credential is gone,
// and nothing is written): the failure count goes up, the state becomes f.State, the class and message
// are kept (the message cut to 256 bytes), the claim is cleared, and evs are
// appended to the outbox in order, all in one atomic step. A revoked
// credential is taken out of the schedule for good (and kept); any other is
// due again at f.RetryAt.
func (s *Store) CommitFailure(ctx context.Context, id, owner string, gen int64, f Failure, evs ...events.Envelope) error {
	switch f.State {
	case StateFailing, StateExpired:
		if f.RetryAt.IsZero() {
			return fmt.Errorf("store: commit failure %s: retry time is zero", id)
		}
	case StateRevoked:
	default:
		return fmt.Errorf("store: commit failure %s: state %q is not failing, expired or revoked", id, f.State)
	}
	args := []any{
		id, owner, gen, string(f.State), f.Class, secret.Truncate(f.Message, maxErrorLen),
		ms(f.RetryAt), ms(s.now()),
	}
	for _, ev := range evs {
		evArgs, err := eventArgs(ev)
		if err != nil {
			return fmt.Errorf("store: commit failure %s: %w", id, err)
		}
		args = append(args, evArgs...)
	}
	reply, err := scriptCommitFailure.Run(ctx, s.rdb, []string{s.credKey(id), s.due, s.outbox}, args...).Slice()
	if err != nil {
		return fmt.Errorf("store: commit failure %s: %w", id, err)
	}
	if status, _ := splitReply(reply); status != replyOK {
		return commitRefusal("commit failure", id, status)
	}
	return nil
}

// Release gives back owner's claim on a credential without a result, for a
// worker that stops before it called the vendor: the state from before the
// claim is restored and the credential is due again at retryAt (now if
// zero). When the claim is not owner's (any more), or the credential is
// gone, it does nothing and returns nil.
func (s *Store) Release(ctx context.Context, id, owner string, retryAt time.Time) error {
	if retryAt.IsZero() {
		retryAt = s.now()
	}
	reply, err := scriptRelease.Run(ctx, s.rdb, []string{s.credKey(id), s.due}, id, owner, ms(retryAt)).Slice()
	if err != nil {
		return fmt.Errorf("store: release %s: %w", id, err)
	}
	if status, _ := splitReply(reply); status != replyOK {
		return refusal("release", id, status)
	}
	return nil
}

// commitRefusal is the error for a commit script's refusal. A credential
// that is gone took the caller's claim with it: that is stale as well as not
// found, so that callers who treat ErrStale as "nothing to do" need not know.
func commitRefusal(op, id, status string) error {
	if status == replyNotFound {
		return fmt.Errorf("store: %s %s: %w (%w)", op, id, ErrStale, ErrNotFound)
	}
	return refusal(op, id, status)
}
