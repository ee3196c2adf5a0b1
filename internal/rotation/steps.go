package rotation

// The steps of a rotation, each one vendor call recorded in the store:
// plan, create the new key (revoking strays of a crashed attempt), verify
// it, switch the credential to it, revoke the old one; or abort and revoke
// the new one.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// keyNamePrefix starts the vendor-side names of a rotation's new keys.
func (u *run) keyNamePrefix() string { return "tokenrelay-rotation-" + u.rot.ID + "-" }

// plan learns the old key (id, scopes) and records the intent to create
// the new one.
func (u *run) plan(ctx context.Context) error {
	var old Key
	err := u.call(ctx, func(ctx context.Context) (err error) {
		old, err = u.v.Keys.Current(ctx, u.oldCred())
		return err
	})
	if err != nil {
		if definitive(err) {
			return u.abort(ctx, "the current key is refused: "+vendors.Classify(err), time.Time{})
		}
		return fmt.Errorf("rotation: %s: describe the current key: %w", u.cred.ID, err)
	}
	fp := old.Fingerprint
	if fp == "" {
		fp = u.cred.KeyFingerprint()
	}
	return u.advance(ctx, store.RotationChange{
		Step: store.RotationCreating, Attempt: 1, KeyName: u.keyNamePrefix() + "1",
		OldKeyID: old.ID, OldFingerprint: fp, Scopes: nonNil(old.Scopes), OldPublic: old.Public,
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// create creates the new key. A rotation resumed at this step does not
// know whether the vendor created the last key asked for: it revokes every
// live key of this rotation's names first, then asks for a key of a new
// name.
func (u *run) create(ctx context.Context, resumed bool) error {
	if resumed {
		if err := u.revokeStrays(ctx, u.oldCred()); err != nil {
			return err
		}
		n := u.rot.Attempt + 1
		if err := u.advance(ctx, store.RotationChange{Step: store.RotationCreating, Attempt: n, KeyName: u.keyNamePrefix() + strconv.Itoa(n)}); err != nil {
			return err
		}
	}
	if err := u.hook(BeforeCreate); err != nil {
		return err
	}
	var k Key
	err := u.call(ctx, func(ctx context.Context) (err error) {
		k, err = u.v.Keys.Create(ctx, u.oldCred(), u.rot.Scopes, u.rot.KeyName)
		return err
	})
	if err != nil && k.ID == "" {
		if definitive(err) {
			return u.abort(ctx, "the vendor refused to create the key: "+vendors.Classify(err), u.r.o.Clock().Add(u.r.o.RetryAbortedAfter))
		}
		return fmt.Errorf("rotation: %s: create the new key: %w", u.cred.ID, err)
	}
	if err == nil {
		if err := u.hook(AfterCreate); err != nil {
			return err
		}
		err = u.advance(ctx, store.RotationChange{Step: store.RotationCreated, NewKeyID: k.ID, NewKey: k.Secret, NewFingerprint: k.Fingerprint, NewPublic: k.Public})
	}
	if err != nil {
		// Not recorded: do not leave the key behind.
		if rerr := u.v.Keys.Revoke(context.WithoutCancel(ctx), u.oldCred(), k.ID); rerr != nil {
			u.log.Warn().Err(rerr).Str("key_id", k.ID).Msg("rotation: revoke of an unrecorded new key failed; the next try revokes it by name")
		}
		return err
	}
	if len(u.rot.Scopes) > 0 && k.Scopes != nil && !sameSet(k.Scopes, u.rot.Scopes) {
		return u.abort(ctx, fmt.Sprintf("the new key got scopes %v, not the old key's %v", k.Scopes, u.rot.Scopes), u.r.o.Clock().Add(u.r.o.RetryAbortedAfter))
	}
	u.log.Info().Str("key_id", k.ID).Str("key_fingerprint", k.Fingerprint).Msg("rotation: new key created")
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// revokeStrays revokes every live key named for this rotation but the one
// recorded as its new key.
func (u *run) revokeStrays(ctx context.Context, auth vendors.Credential) error {
	var keys []Key
	err := u.call(ctx, func(ctx context.Context) (err error) {
		keys, err = u.v.Keys.List(ctx, auth)
		return err
	})
	if err != nil {
		return fmt.Errorf("rotation: %s: list keys to find a lost new key: %w", u.cred.ID, err)
	}
	for _, k := range keys {
		if k.Revoked || k.ID == u.rot.NewKeyID || !strings.HasPrefix(k.Name, u.keyNamePrefix()) {
			continue
		}
		if err := u.call(ctx, func(ctx context.Context) error { return u.v.Keys.Revoke(ctx, auth, k.ID) }); err != nil {
			return fmt.Errorf("rotation: %s: revoke the lost new key %s: %w", u.cred.ID, k.ID, err)
		}
		u.log.Info().Str("key_id", k.ID).Msg("rotation: revoked a new key whose creation was not recorded")
	}
	return nil
}

// verify checks the new key with a real call.
func (u *run) verify(ctx context.Context) error {
	if err := u.hook(BeforeVerify); err != nil {
		return err
	}
	if err := u.call(ctx, func(ctx context.Context) error { return u.v.Keys.Verify(ctx, u.newCred()) }); err != nil {
		if definitive(err) {
			return u.abort(ctx, "the new key failed verification: "+vendors.Classify(err), u.r.o.Clock().Add(u.r.o.RetryAbortedAfter))
		}
		return fmt.Errorf("rotation: %s: verify the new key: %w", u.cred.ID, err)
	}
	return u.advance(ctx, store.RotationChange{Step: store.RotationVerified})
}

// switchKey puts the new key in the credential, with its events.
func (u *run) switchKey(ctx context.Context) error {
	if err := u.hook(BeforeSwitch); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		cred, err := u.r.o.Store.Get(ctx, u.cred.ID)
		if err != nil {
			return fmt.Errorf("rotation: %s: read before the switch: %w", u.cred.ID, err)
		}
		u.cred = cred
		if cred.State == store.StateRevoked {
			return u.abort(ctx, "the credential was revoked", time.Time{})
		}
		now := u.r.o.Clock()
		newKey := u.newKey()
		evs := []events.Envelope{}
		rotated, err := events.New(events.TypeKeyRotated, cred.Vendor, cred.ID, now, events.KeyRotated{
			Vendor: cred.Vendor, Credential: cred.ID, Rotation: u.rot.ID,
			OldKeyFingerprint: u.rot.OldFingerprint, NewKeyFingerprint: u.rot.NewFingerprint,
		})
		if err != nil {
			return err
		}
		evs = append(evs, rotated)
		sw := store.KeySwitch{Keys: u.v.Keys.Use(cred.Keys, newKey)}
		if u.v.KeyIsToken {
			lifetime := u.v.TokenLifetime
			if lifetime <= 0 {
				lifetime = 24 * time.Hour
			}
			tok := store.Token{AccessToken: newKey.Secret, TokenType: "Bearer", IssuedAt: now, ExpiresAt: now.Add(lifetime)}
			sw.Token, sw.NextRefresh = &tok, u.v.Renewal.Time(now, lifetime, u.r.o.Rand())
			renewed, err := events.New(events.TypeTokenRenewed, cred.Vendor, cred.ID, now, events.TokenRenewed{
				Vendor: cred.Vendor, Credential: cred.ID, Generation: cred.Generation + 1,
				IssuedAt: tok.IssuedAt.UTC(), ExpiresAt: tok.ExpiresAt.UTC(), Fingerprint: tok.AccessToken.Fingerprint(),
			})
			if err != nil {
				return err
			}
			evs = append(evs, renewed)
		}
		err = u.r.o.Store.SwitchRotation(ctx, &u.rot, u.r.o.Owner, cred.Generation, sw, evs...)
		if errors.Is(err, store.ErrStale) && attempt < 5 && u.rot.Step == store.RotationVerified {
			if cur, gerr := u.r.o.Store.GetRotation(ctx, u.cred.ID); gerr == nil && cur.ID == u.rot.ID && cur.Step == store.RotationVerified && cur.Owner == u.r.o.Owner {
				continue // renewed meanwhile: switch the new generation
			}
		}
		if errors.Is(err, store.ErrAlreadyRevoked) {
			return u.abort(ctx, "the credential was revoked", time.Time{})
		}
		if err != nil {
			return fmt.Errorf("rotation: %s: switch: %w", u.cred.ID, err)
		}
		u.cred.Keys = sw.Keys
		u.log.Info().Str("old_key_fingerprint", u.rot.OldFingerprint).Str("new_key_fingerprint", u.rot.NewFingerprint).Msg("rotation: switched to the new key")
		return nil
	}
}

// revokeOld revokes the old key, authenticated by the new one, and ends
// the rotation with the old key's key.revoked event.
func (u *run) revokeOld(ctx context.Context) error {
	if err := u.hook(BeforeRevoke); err != nil {
		return err
	}
	if until := u.rot.SwitchedAt.Add(u.v.RevokeOldAfter); u.v.RevokeOldAfter > 0 && u.r.o.Clock().Before(until) {
		return fmt.Errorf("rotation: %s: %w", u.cred.ID, &WaitError{Until: until})
	}
	if u.rot.OldKeyID != "" {
		if err := u.call(ctx, func(ctx context.Context) error { return u.v.Keys.Revoke(ctx, u.newCred(), u.rot.OldKeyID) }); err != nil {
			return fmt.Errorf("rotation: %s: revoke the old key: %w", u.cred.ID, err)
		}
	}
	if err := u.hook(AfterRevoke); err != nil {
		return err
	}
	now := u.r.o.Clock()
	ev, err := events.New(events.TypeKeyRevoked, u.cred.Vendor, u.cred.ID, now, events.KeyRevoked{
		Vendor: u.cred.Vendor, Credential: u.cred.ID, Generation: u.cred.Generation,
		Reason: events.ReasonRotated, KeyFingerprint: u.rot.OldFingerprint,
	})
	if err != nil {
		return err
	}
	var next time.Time
	if u.v.RotateEvery > 0 {
		next = now.Add(u.v.RotateEvery)
	}
	if err := u.r.o.Store.FinishRotation(ctx, &u.rot, u.r.o.Owner, store.RotationDone, next, "", ev); err != nil {
		return fmt.Errorf("rotation: %s: record the end: %w", u.cred.ID, err)
	}
	u.log.Info().Str("old_key_fingerprint", u.rot.OldFingerprint).Msg("rotation: old key revoked; rotation done")
	return nil
}

// abort gives the rotation up before the switch: any new key of it is
// revoked (authenticated by the old key, or by the new one when the old is
// refused), then the rotation ends, due again at retryAt (zero: not
// scheduled).
func (u *run) abort(ctx context.Context, why string, retryAt time.Time) error {
	if u.rot.Step == store.RotationSwitched {
		return fmt.Errorf("rotation: %s: cannot abort after the switch (%s)", u.cred.ID, why)
	}
	if u.rot.Step != store.RotationPlanned {
		if err := u.revokeNew(ctx); err != nil {
			return err
		}
	}
	if err := u.r.o.Store.FinishRotation(ctx, &u.rot, u.r.o.Owner, store.RotationAborted, retryAt, why); err != nil {
		return fmt.Errorf("rotation: %s: record the abort: %w", u.cred.ID, err)
	}
	u.log.Warn().Str("reason", why).Msg("rotation aborted; the old key is untouched")
	return fmt.Errorf("rotation: %s: %w: %s", u.cred.ID, ErrAborted, why)
}

// revokeNew revokes the rotation's new key and any lost one.
func (u *run) revokeNew(ctx context.Context) error {
	auth := u.oldCred()
	if u.rot.NewKeyID != "" {
		revoke := func(ctx context.Context) error { return u.v.Keys.Revoke(ctx, auth, u.rot.NewKeyID) }
		err := u.call(ctx, revoke)
		if err != nil && vendors.IsRevoked(err) && !u.rot.NewKey.IsZero() {
			// The old key is refused (revoked by the operator): the new
			// key revokes itself.
			auth = u.newCred()
			err = u.call(ctx, revoke)
		}
		if err != nil {
			return fmt.Errorf("rotation: %s: revoke the new key of an aborted rotation: %w", u.cred.ID, err)
		}
	}
	if u.rot.Step == store.RotationCreating || u.rot.Attempt > 1 {
		if err := u.revokeStrays(ctx, auth); err != nil && !vendors.IsRevoked(err) {
			return err
		}
	}
	return nil
}
