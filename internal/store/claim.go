package store

// Claims: a scheduler's lease on due credentials (claim_due.lua), and a
// worker's claim on the generations it refreshes (claim.lua).

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// ClaimDue returns up to limit credentials whose refresh is due at now, each
// with the generation to renew, and moves each one's due time to now+lease:
// another scheduler does not get it again, and if the job made for it is
// lost, it is due again when the lease ends. A credential a worker holds a
// claim on is put back until that claim ends instead. Cost O(log N + due).
func (s *Store) ClaimDue(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]Due, error) {
	if limit <= 0 || lease <= 0 || now.IsZero() {
		return nil, fmt.Errorf("store: claim due: need a time, and a positive limit (%d) and lease (%s)", limit, lease)
	}
	vals, err := scriptClaimDue.Run(ctx, s.rdb, []string{s.due},
		s.prefix, ms(now), limit, ms(now.Add(lease)),
	).Slice()
	if err != nil {
		return nil, fmt.Errorf("store: claim due: %w", err)
	}
	due := make([]Due, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		id, _ := vals[i].(string)
		genText, _ := vals[i+1].(string)
		gen, err := strconv.ParseInt(genText, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("store: claim due: %s: field %s is not an integer", id, fGen)
		}
		due = append(due, Due{ID: id, Generation: gen})
	}
	return due, nil
}

// Claim gives owner the right to refresh generation gen of a credential
// until lease has passed, and returns the credential with every secret
// opened. It fails with ErrNotFound; with ErrStale when the credential is
// revoked or its generation is no longer gen (the work is already done);
// with a *BusyError when another owner's claim still holds. Claiming again
// as the same owner extends the claim. While claimed, the credential is in
// StateRefreshing and not due before the claim ends.
func (s *Store) Claim(ctx context.Context, id string, gen int64, owner string, lease time.Duration) (Credential, error) {
	if owner == "" || lease <= 0 {
		return Credential{}, fmt.Errorf("store: claim %s: owner must be set and lease (%s) positive", id, lease)
	}
	got, err := s.claim(ctx, []Due{{ID: id, Generation: gen}}, owner, lease, len(claimFields))
	if err != nil {
		return Credential{}, fmt.Errorf("store: claim %s: %w", id, err)
	}
	return got[0].Credential, got[0].Err
}

// Claimed is the outcome of one credential's claim in ClaimBatch.
type Claimed struct {
	// Credential is the claimed credential when Err is nil.
	Credential Credential
	// Err is nil when the claim was taken, else what Claim would have
	// returned: an error wrapping ErrNotFound, ErrStale or a *BusyError.
	Err error
}

// ClaimBatch is Claim for several renewals at once, in one atomic step and
// one round trip, each credential fenced on its own exactly as Claim does
// it, all for the same owner. A credential named twice is claimed once (the
// later mention is stale), so that one owner never calls a vendor twice for
// one renewal. The result has one element per item, in order. A claimed
// credential holds what a refresh needs and no more: its id, vendor,
// client id, keys, refresh token, generation, expiry, failure count and
// state before the claim; the rest (the access token above all, neither
// read nor opened) is left zero. The error is for the call as a whole
// (Redis unreachable, bad arguments).
func (s *Store) ClaimBatch(ctx context.Context, items []Due, owner string, lease time.Duration) ([]Claimed, error) {
	if owner == "" || lease <= 0 {
		return nil, fmt.Errorf("store: claim batch: owner must be set and lease (%s) positive", lease)
	}
	if len(items) == 0 {
		return nil, nil
	}
	got, err := s.claim(ctx, items, owner, lease, claimRefreshFields)
	if err != nil {
		return nil, fmt.Errorf("store: claim batch of %d from %s: %w", len(items), items[0].ID, err)
	}
	return got, nil
}

// claim runs lua/claim.lua on items, asking for the first nfields of
// claimFields, and decodes its replies.
func (s *Store) claim(ctx context.Context, items []Due, owner string, lease time.Duration, nfields int) ([]Claimed, error) {
	now := s.now()
	keys := make([]string, 0, len(items))
	args := make([]any, 4, 4+2*len(items))
	args[0], args[1], args[2], args[3] = owner, ms(now), ms(now.Add(lease)), nfields
	for _, it := range items {
		keys = append(keys, s.credKey(it.ID))
		args = append(args, it.ID, it.Generation)
	}
	replies, err := s.runAcked(ctx, opClaim, scriptClaim, keys, args...).Slice()
	if err != nil {
		return nil, err
	}
	if len(replies) != len(items) {
		return nil, fmt.Errorf("claim script answered %d replies for %d credentials", len(replies), len(items))
	}
	out := make([]Claimed, len(items))
	for i, it := range items {
		r, _ := replies[i].([]any)
		status, rest := splitReply(r)
		switch {
		case status == replyOK && len(r) == nfields:
			c, err := s.decodeClaimed(it.ID, r)
			if err != nil {
				out[i].Err = fmt.Errorf("store: claim %s: %w", it.ID, err)
				continue
			}
			out[i].Credential = c
		case status == replyBusy && len(rest) == 1:
			until, err := parseTime(fClaimUntil, str(rest[0]))
			if err != nil {
				out[i].Err = fmt.Errorf("store: claim %s: %w", it.ID, err)
				continue
			}
			out[i].Err = fmt.Errorf("store: claim %s: %w", it.ID, &BusyError{Until: until})
		default:
			out[i].Err = refusal("claim", it.ID, status)
		}
	}
	return out, nil
}

// claimFields are the fields lua/claim.lua can return for a claimed
// credential, by position (the script's FIELDS, in the same order; the
// first one carries 'OK', prev_state the state before the claim). A batch
// claim asks for the first claimRefreshFields, what a refresh needs.
var claimFields = [...]string{
	fState, fGen, fClaimOwner, fClaimUntil, fPrevState, fVendor, fClientID, fClientSecret,
	fRefreshToken, fExpiresAt, fFailures, fAccessToken, fTokenType, fIssuedAt, fNextRefresh,
	fLastClass, fLastError, fCreatedAt, fUpdatedAt,
}

// Positions in claimFields.
const (
	cGen = iota + 1
	cClaimOwner
	cClaimUntil
	cPrevState
	cVendor
	cClientID
	cClientSecret
	cRefreshToken
	cExpiresAt
	cFailures
	claimRefreshFields // the fields before this position are what a refresh needs
)

const (
	cAccessToken = claimRefreshFields + iota
	cTokenType
	cIssuedAt
	cNextRefresh
	cLastClass
	cLastError
	cCreatedAt
	cUpdatedAt
)

// decodeClaimed decodes the reply of a claimed credential (claimFields,
// all or the first claimRefreshFields), opening the keys and refresh
// token, and the access token if it is there.
func (s *Store) decodeClaimed(id string, r []any) (Credential, error) {
	at := func(pos int) string {
		if pos < len(r) {
			return str(r[pos])
		}
		return ""
	}
	c := Credential{
		ID:               id,
		Vendor:           at(cVendor),
		ClientID:         at(cClientID),
		State:            StateRefreshing,
		StateBeforeClaim: State(at(cPrevState)),
		Token:            Token{TokenType: at(cTokenType)},
		LastClass:        at(cLastClass),
		LastError:        at(cLastError),
	}
	var (
		failures int64
		err      error
	)
	for _, d := range [...]struct {
		pos int
		n   *int64
		t   *time.Time
	}{
		{pos: cGen, n: &c.Generation},
		{pos: cFailures, n: &failures},
		{pos: cExpiresAt, t: &c.Token.ExpiresAt},
		{pos: cIssuedAt, t: &c.Token.IssuedAt},
		{pos: cNextRefresh, t: &c.NextRefresh},
		{pos: cCreatedAt, t: &c.CreatedAt},
		{pos: cUpdatedAt, t: &c.UpdatedAt},
	} {
		if d.n != nil {
			*d.n, err = parseInt(claimFields[d.pos], at(d.pos))
		} else {
			*d.t, err = parseTime(claimFields[d.pos], at(d.pos))
		}
		if err != nil {
			return Credential{}, err
		}
	}
	c.Failures = int(failures)
	for _, f := range [...]struct {
		pos  int
		name string
	}{{cClientSecret, fClientSecret}, {cRefreshToken, fRefreshToken}, {cAccessToken, fAccessToken}} {
		if err := s.open(&c, f.name, at(f.pos)); err != nil {
			return Credential{}, err
		}
	}
	return c, nil
}
