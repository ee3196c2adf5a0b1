package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/lease"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/secret"
)

// After a master-key rotation (a new current key, the old one kept as a
// previous key), values sealed under the old key still open; Reseal seals
// each of them again under the current key, so that the old key can then be
// dropped. It also rewrites values that open only with the legacy binding
// (see binding.go).

//go:embed lua/reseal.lua
var luaReseal string

var scriptReseal = newScript(luaReseal)

// credSealed are the sealed fields of a credential hash; rotSealed those of
// a rotation hash.
var (
	credSealed = []string{fClientSecret, fAccessToken, fRefreshToken}
	rotSealed  = []string{rNewKey}
)

// ResealOptions configure Reseal.
type ResealOptions struct {
	// Batch is how many credentials are read (and their values swapped) per
	// round trip. Default 500.
	Batch int
	// DryRun counts what would be sealed again and writes nothing (for
	// tokenrelay keys status).
	DryRun bool
	// Progress, when set, is called after every batch with the totals so
	// far.
	Progress func(ResealProgress)
}

// ResealProgress counts what a pass of Reseal has done so far.
type ResealProgress struct {
	// Total is how many credentials the store held when the pass began;
	// Scanned how many of them have been looked at.
	Total, Scanned int64
	// Values is how many sealed values were looked at; Current those under
	// the current key and binding already.
	Values, Current int64
	// Stale is how many values were under an old key or the legacy
	// binding; of them, Resealed were sealed again, Conflicts had been
	// changed by a writer meanwhile and were left (the writer sealed them
	// under the current key; the next pass checks), and in a dry run none
	// is either.
	Stale, Resealed, Conflicts int64
	// Failed is how many values could not be opened (sealed under a key the
	// keyring does not hold, or tampered with); they are left as they are.
	Failed int64
	// ByKey counts the values looked at by the id of the key that sealed
	// them ("" for values that are not sealed values at all).
	ByKey map[string]int64
	// FailedKeys are the key ids of the values that failed, when it was
	// the key that was missing.
	FailedKeys map[string]int64
}

// Remaining estimates how many credentials are left to look at.
func (p ResealProgress) Remaining() int64 { return max(p.Total-p.Scanned, 0) }

// Left is how many values are still under an old key or binding, or could
// not be opened, as far as the pass has seen.
func (p ResealProgress) Left() int64 { return p.Stale - p.Resealed + p.Failed }

// Reseal walks every credential (and its key rotation, if any) and seals
// again, under the current key and with the full binding, each value that
// is under another key or the legacy binding, a batch at a time. Each swap
// is a compare-and-set (lua/reseal.lua): a value a writer changed meanwhile
// is left alone, so a concurrent renewal is never lost, and a pass can be
// run again at any time (a value already current is not written). It
// returns the totals of the pass; values that could not be opened are
// counted in Failed, not returned as an error.
func (s *Store) Reseal(ctx context.Context, opts ResealOptions) (ResealProgress, error) {
	if opts.Batch <= 0 {
		opts.Batch = scanBatch
	}
	total, err := s.Count(ctx)
	if err != nil {
		return ResealProgress{}, fmt.Errorf("store: reseal: %w", err)
	}
	p := ResealProgress{Total: total, ByKey: map[string]int64{}, FailedKeys: map[string]int64{}}
	err = s.scanIDsBy(ctx, "reseal", opts.Batch, func(ids []string) error {
		if err := s.resealBatch(ctx, ids, opts.DryRun, &p); err != nil {
			return err
		}
		if opts.Progress != nil {
			opts.Progress(p)
		}
		return nil
	})
	return p, err
}

// sealedValue is one sealed value of a hash, read for a re-seal.
type sealedValue struct {
	key, id, vendor, field, value string
}

// resealBatch reads the sealed values of the credentials ids, seals again
// those that need it, and swaps them in one script.
func (s *Store) resealBatch(ctx context.Context, ids []string, dryRun bool, p *ResealProgress) error {
	credCmds := make([]*redis.SliceCmd, len(ids))
	rotCmds := make([]*redis.SliceCmd, len(ids))
	credRead := append([]string{fVendor}, credSealed...)
	rotRead := append([]string{rVendor}, rotSealed...)
	if _, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, id := range ids {
			credCmds[i] = pl.HMGet(ctx, s.credKey(id), credRead...)
			rotCmds[i] = pl.HMGet(ctx, s.rotKey(id), rotRead...)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("store: reseal: %w", err)
	}
	var values []sealedValue
	for i, id := range ids {
		cred := fieldsFromValues(credRead, credCmds[i].Val())
		if cred[fVendor] == "" {
			continue // listed but gone
		}
		p.Scanned++
		for _, f := range credSealed {
			if v := cred[f]; v != "" {
				values = append(values, sealedValue{key: s.credKey(id), id: id, vendor: cred[fVendor], field: f, value: v})
			}
		}
		rot := fieldsFromValues(rotRead, rotCmds[i].Val())
		// A rotation that has not recorded its vendor yet is bound to the
		// credential's once sealed again (the script records it).
		rotVendor := rot[rVendor]
		if rotVendor == "" {
			rotVendor = cred[fVendor]
		}
		for _, f := range rotSealed {
			if v := rot[f]; v != "" {
				values = append(values, sealedValue{key: s.rotKey(id), id: id, vendor: rotVendor, field: f, value: v})
			}
		}
	}

	var keys []string
	var args []any
	for _, v := range values {
		p.Values++
		kid, err := seal.KeyIDOf(v.value)
		p.ByKey[kid]++
		if err != nil {
			p.Failed++
			continue
		}
		plain, legacy, err := s.openField(v.id, v.vendor, v.field, v.value)
		if err != nil {
			p.Failed++
			if errors.Is(err, seal.ErrUnknownKey) {
				p.FailedKeys[kid]++
			}
			continue
		}
		if kid == s.ring.CurrentKeyID() && !legacy {
			p.Current++
			continue
		}
		p.Stale++
		if dryRun {
			continue
		}
		sealed, err := s.seal(v.id, v.vendor, v.field, secret.New(string(plain)))
		if err != nil {
			return fmt.Errorf("store: reseal %s: %w", v.id, err)
		}
		keys = append(keys, v.key)
		args = append(args, v.field, v.value, sealed, v.vendor)
	}
	if len(keys) == 0 {
		return nil
	}
	if s.testBeforeSwap != nil {
		s.testBeforeSwap()
	}
	swapped, err := scriptReseal.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return fmt.Errorf("store: reseal: %w", err)
	}
	for _, ok := range swapped {
		if ok == 1 {
			p.Resealed++
		} else {
			p.Conflicts++
		}
	}
	return nil
}

// ResealLease takes, or extends, the re-seal lease for owner for ttl, and
// reports whether owner holds it: one process re-seals at a time, however
// many workers start.
func (s *Store) ResealLease(ctx context.Context, owner string, ttl time.Duration) (bool, error) {
	got, err := lease.New(s.rdb, s.resealLeaseKey(), owner, ttl).Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("store: reseal lease: %w", err)
	}
	return got.Held(), nil
}

// ReleaseResealLease gives the lease back if owner holds it.
func (s *Store) ReleaseResealLease(ctx context.Context, owner string) error {
	if err := lease.New(s.rdb, s.resealLeaseKey(), owner, 0).Release(ctx); err != nil {
		return fmt.Errorf("store: release reseal lease: %w", err)
	}
	return nil
}

// ResealDone returns the key id recorded by MarkResealDone ("" if none).
func (s *Store) ResealDone(ctx context.Context) (string, error) {
	kid, err := s.rdb.Get(ctx, s.resealDoneKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("store: reseal done: %w", err)
	}
	return kid, nil
}

// MarkResealDone records that a pass left every value under the current
// key and the full binding, so that a process starting with no previous
// key does not walk the store again.
func (s *Store) MarkResealDone(ctx context.Context) error {
	if err := s.rdb.Set(ctx, s.resealDoneKey(), s.ring.CurrentKeyID(), 0).Err(); err != nil {
		return fmt.Errorf("store: mark reseal done: %w", err)
	}
	return nil
}

// CurrentKeyID is the id of the master key the store seals with.
func (s *Store) CurrentKeyID() string { return s.ring.CurrentKeyID() }

// KeyIDs are the ids of the master keys the store opens with, the current
// one first.
func (s *Store) KeyIDs() []string { return s.ring.KeyIDs() }
