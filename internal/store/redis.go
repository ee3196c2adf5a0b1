package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/secret"
)

// scanBatch is how many credential ids Scan and Reconcile handle per round
// trip.
const scanBatch = 500

// maxErrorLen caps the failure message kept in a credential (bytes), so
// that a chatty vendor cannot swell every hash.
const maxErrorLen = 256

// Options configure a Store.
type Options struct {
	// Prefix is put in front of every key. Default events.DefaultPrefix
	// ("tokenrelay:"). On Redis Cluster, give a prefix with a hash tag, such
	// as "{tokenrelay}:": the scripts touch several keys at once, and the
	// due and reconcile scripts name credential keys from the prefix, so
	// every key must live in one slot.
	Prefix string
	// Keyring seals and opens the secret fields. Required.
	Keyring *seal.Keyring
	// Clock tells the time; every time the store writes comes from it
	// (never from Redis TIME). Default time.Now.
	Clock func() time.Time
}

// Store keeps credentials in Redis; see the package doc for the layout. It
// is safe for concurrent use, and any number of processes may share one
// Redis through it.
type Store struct {
	rdb    redis.UniversalClient
	ring   *seal.Keyring
	now    func() time.Time
	prefix string
	creds  string // set of every id
	due    string // zset id -> next refresh
	outbox string // events stream
	// testBeforeSwap, set by tests only, runs between a re-seal's read
	// and its swap, where a concurrent writer can strike.
	testBeforeSwap func()
}

// New returns a store on rdb configured by opts.
func New(rdb redis.UniversalClient, opts Options) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("store: a Redis client is required")
	}
	if opts.Keyring == nil {
		return nil, errors.New("store: Options.Keyring is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = events.DefaultPrefix
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Store{
		rdb:    rdb,
		ring:   opts.Keyring,
		now:    opts.Clock,
		prefix: opts.Prefix,
		creds:  credsKey(opts.Prefix),
		due:    dueKey(opts.Prefix),
		outbox: events.OutboxKey(opts.Prefix),
	}, nil
}

// Upsert adds a credential, due for its first refresh at once, or updates
// the vendor, client id and client secret of an existing one. An update
// leaves the state, generation and token alone: a revoked credential stays
// revoked. An unchanged secret is told by its fingerprint, so nothing is
// decrypted and nothing is written.
func (s *Store) Upsert(ctx context.Context, c NewCredential) (UpsertResult, error) {
	if c.ID == "" {
		return "", errors.New("store: upsert: credential id is empty")
	}
	if c.Vendor == "" {
		return "", fmt.Errorf("store: upsert %s: vendor is empty", c.ID)
	}
	bundle, err := c.Keys.encode()
	if err != nil {
		return "", fmt.Errorf("store: upsert %s: %w", c.ID, err)
	}
	sealed, err := s.seal(c.ID, c.Vendor, fClientSecret, bundle)
	if err != nil {
		return "", fmt.Errorf("store: upsert %s: %w", c.ID, err)
	}
	keys := []string{s.credKey(c.ID), s.creds, s.due}
	args := []any{c.ID, c.Vendor, c.ClientID, sealed, bundle.Fingerprint(), ms(s.now())}
	// A new vendor name for a credential with a token: the token's fields
	// are bound to the old name, so the script asks for them sealed again
	// (rebind), and takes them only if nobody changed them meanwhile.
	for range maxRebind {
		res, err := scriptUpsert.Run(ctx, s.rdb, keys, args...).Text()
		if err != nil {
			return "", fmt.Errorf("store: upsert %s: %w", c.ID, err)
		}
		if res != replyRebind {
			return UpsertResult(res), nil
		}
		rebound, err := s.rebindTokens(ctx, c.ID, c.Vendor)
		if err != nil {
			return "", fmt.Errorf("store: upsert %s: %w", c.ID, err)
		}
		args = append(args[:6], rebound...)
	}
	return "", fmt.Errorf("store: upsert %s: its token kept changing while the new vendor name was applied; try again", c.ID)
}

// maxRebind bounds the attempts to apply a vendor rename while renewals
// race with it.
const maxRebind = 5

// rebindTokens reads the token fields of a credential and seals them again
// for vendor, and returns the extra arguments of lua/upsert.lua: the vendor,
// access token and refresh token read (which the script compares) and the
// two sealed again.
func (s *Store) rebindTokens(ctx context.Context, id, vendor string) ([]any, error) {
	vals, err := s.rdb.HMGet(ctx, s.credKey(id), fVendor, fAccessToken, fRefreshToken).Result()
	if err != nil {
		return nil, err
	}
	f := fieldsFromValues([]string{fVendor, fAccessToken, fRefreshToken}, vals)
	out := []any{f[fVendor], f[fAccessToken], "", f[fRefreshToken], ""}
	for i, field := range []string{fAccessToken, fRefreshToken} {
		if f[field] == "" {
			continue
		}
		plain, _, err := s.openField(id, f[fVendor], field, f[field])
		if err != nil {
			return nil, fmt.Errorf("rebind to vendor %s: %w", vendor, err)
		}
		if out[2+2*i], err = s.seal(id, vendor, field, secret.New(string(plain))); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Get returns everything about a credential, its secrets opened, or
// ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Credential, error) {
	m, err := s.rdb.HGetAll(ctx, s.credKey(id)).Result()
	if err != nil {
		return Credential{}, fmt.Errorf("store: get %s: %w", id, err)
	}
	c, err := s.decode(id, fields(m), fClientSecret, fAccessToken, fRefreshToken)
	if err != nil {
		return Credential{}, fmt.Errorf("store: get %s: %w", id, err)
	}
	return c, nil
}

// CurrentToken is Get for the hot path of token requests: one round trip
// and one decryption. ClientSecret and Token.RefreshToken are left zero.
func (s *Store) CurrentToken(ctx context.Context, id string) (Credential, error) {
	vals, err := s.rdb.HMGet(ctx, s.credKey(id), tokenFields...).Result()
	if err != nil {
		return Credential{}, fmt.Errorf("store: current token %s: %w", id, err)
	}
	c, err := s.decode(id, fieldsFromValues(tokenFields, vals), fAccessToken)
	if err != nil {
		return Credential{}, fmt.Errorf("store: current token %s: %w", id, err)
	}
	return c, nil
}

// Scan calls fn with the summary of every credential, in no particular
// order, reading a batch at a time and decrypting nothing. It stops at the
// first error fn returns and returns that error as is. A credential added or
// removed during the scan may or may not be seen; each one is seen once.
func (s *Store) Scan(ctx context.Context, fn func(Summary) error) error {
	return s.scanIDs(ctx, "scan", func(ids []string) error {
		cmds := make([]*redis.SliceCmd, len(ids))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.HMGet(ctx, s.credKey(id), summaryFields...)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		for i, id := range ids {
			f := fieldsFromValues(summaryFields, cmds[i].Val())
			if !f.exists() {
				continue // listed but gone: nothing to show
			}
			sum, err := f.summary(id)
			if err != nil {
				return fmt.Errorf("store: scan %s: %w", id, err)
			}
			if err := fn(sum); err != nil {
				return err
			}
		}
		return nil
	})
}

// scanIDs walks the creds set in batches of distinct ids.
func (s *Store) scanIDs(ctx context.Context, op string, batch func(ids []string) error) error {
	return s.scanIDsBy(ctx, op, scanBatch, batch)
}

// scanIDsBy is scanIDs asking for about size ids per round trip.
func (s *Store) scanIDsBy(ctx context.Context, op string, size int, batch func(ids []string) error) error {
	seen := make(map[string]struct{})
	var cursor uint64
	for {
		page, next, err := s.rdb.SScan(ctx, s.creds, cursor, "", int64(size)).Result()
		if err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
		// SSCAN may return an id twice; hand each one over once.
		ids := page[:0]
		for _, id := range page {
			if _, dup := seen[id]; !dup {
				seen[id] = struct{}{}
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			if err := batch(ids); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

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
	replies, err := scriptClaim.Run(ctx, s.rdb, keys, args...).Slice()
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
	args := make([]any, 1, 1+14*len(commits))
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
	replies, err := scriptCommitRenewal.Run(ctx, s.rdb, keys, args...).Slice()
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

// renewalArgs are the 14 script arguments of one renewal (see
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
		ms(r.NextRefresh), c.Event.ID, c.Event.Subject, string(evJSON),
	}, nil
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

// Reconcile schedules at now every credential that should be scheduled (any
// state but revoked) and is missing from the due index, and returns how
// many it found: the safety net after a lost or flushed index. Entries in
// the index are left as they are. It walks the creds set a page at a time,
// one script per page, without reading the ids out of Redis.
func (s *Store) Reconcile(ctx context.Context, now time.Time) (int, error) {
	if now.IsZero() {
		return 0, errors.New("store: reconcile: time is zero")
	}
	fixed, cursor := 0, "0"
	for {
		reply, err := scriptReconcile.Run(ctx, s.rdb, []string{s.creds, s.due},
			s.prefix, ms(now), cursor, scanBatch,
		).Slice()
		if err != nil {
			return fixed, fmt.Errorf("store: reconcile: %w", err)
		}
		if len(reply) != 2 {
			return fixed, fmt.Errorf("store: reconcile: unexpected script reply of %d values", len(reply))
		}
		n, _ := reply[1].(int64)
		fixed += int(n)
		if cursor = str(reply[0]); cursor == "0" || cursor == "" {
			return fixed, nil
		}
	}
}

// ReconcileTurn takes the turn to reconcile for the period given: it says
// true to one caller per period, however many scheduler replicas ask (a
// Redis key set if absent, expiring after period), so that they do not
// all walk every credential.
func (s *Store) ReconcileTurn(ctx context.Context, period time.Duration) (bool, error) {
	if period <= 0 {
		return false, fmt.Errorf("store: reconcile turn: period %s is not positive", period)
	}
	ok, err := s.rdb.SetNX(ctx, s.reconcileTurnKey(), ms(s.now()), period).Result()
	if err != nil {
		return false, fmt.Errorf("store: reconcile turn: %w", err)
	}
	return ok, nil
}

// Count returns how many credentials the store holds.
func (s *Store) Count(ctx context.Context) (int64, error) {
	n, err := s.rdb.SCard(ctx, s.creds).Result()
	if err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}

// decode turns a credential hash into a Credential, opening the sealed
// fields named. An empty hash is ErrNotFound.
func (s *Store) decode(id string, f fields, sealed ...string) (Credential, error) {
	if !f.exists() {
		return Credential{}, ErrNotFound
	}
	c, err := f.credential(id)
	if err != nil {
		return Credential{}, err
	}
	for _, field := range sealed {
		if err := s.open(&c, field, f[field]); err != nil {
			return Credential{}, err
		}
	}
	return c, nil
}

// open opens one sealed field of a credential into c; an empty value
// leaves it zero.
func (s *Store) open(c *Credential, field, sealed string) error {
	if sealed == "" {
		return nil
	}
	plain, _, err := s.openField(c.ID, c.Vendor, field, sealed)
	if err != nil {
		return err
	}
	switch field {
	case fClientSecret:
		if c.Keys, err = decodeKeys(plain); err != nil {
			return fmt.Errorf("open %s: %w", field, err)
		}
	case fAccessToken:
		c.Token.AccessToken = secret.New(string(plain))
	case fRefreshToken:
		c.Token.RefreshToken = secret.New(string(plain))
	}
	return nil
}

// refusal is the error for a script's refusal.
func refusal(op, id, status string) error {
	switch status {
	case replyNotFound:
		return fmt.Errorf("store: %s %s: %w", op, id, ErrNotFound)
	case replyStale:
		return fmt.Errorf("store: %s %s: %w", op, id, ErrStale)
	default:
		return fmt.Errorf("store: %s %s: unexpected script reply %q", op, id, status)
	}
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

// eventArgs are the outbox fields of an event as script arguments: id,
// subject, JSON (as events.MarshalEnvelope writes it).
func eventArgs(ev events.Envelope) ([]any, error) {
	raw, err := events.MarshalEnvelope(ev)
	if err != nil {
		return nil, err
	}
	return []any{ev.ID, ev.Subject, string(raw)}, nil
}

// splitReply splits a script's {status, ...} reply.
func splitReply(reply []any) (string, []any) {
	if len(reply) == 0 {
		return "", nil
	}
	status, _ := reply[0].(string)
	return status, reply[1:]
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
