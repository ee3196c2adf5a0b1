package store

import (
	"context"
	"errors"
	"fmt"
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
	// Replication makes the writes that fence vendor calls wait for
	// replicas (see Replication). Default: none waits.
	Replication Replication
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
	// replication is Options.Replication, its defaults filled.
	replication Replication
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
	if opts.Replication.MinAcks < 0 {
		return nil, fmt.Errorf("store: Options.Replication.MinAcks is %d; it cannot be negative", opts.Replication.MinAcks)
	}
	if opts.Replication.Timeout <= 0 {
		opts.Replication.Timeout = DefaultReplicaAckTimeout
	}
	return &Store{
		rdb:         rdb,
		ring:        opts.Keyring,
		now:         opts.Clock,
		prefix:      opts.Prefix,
		creds:       credsKey(opts.Prefix),
		due:         dueKey(opts.Prefix),
		outbox:      events.OutboxKey(opts.Prefix),
		replication: opts.Replication,
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
