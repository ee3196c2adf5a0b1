package rotation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	account = "acme"
	credID  = "hs-1"
	vendor  = "hs"
	lease   = 5 * time.Minute
	every   = 90 * 24 * time.Hour
)

var scopes = []string{"patients:read", "records:read"}

type bundle struct {
	clock   *testenv.Clock // nil on the real clock (setupOn)
	now     func() time.Time
	sb      *sandbox.Sandbox
	st      *store.Store
	rdb     *redis.Client
	vendor  rotation.Vendor
	oldID   string
	oldKey  string
	adapter *healthsync.Adapter
}

func setup(t *testing.T) *bundle {
	t.Helper()
	clock := testenv.NewClock(storetest.T0)
	b := setupOn(t, clock.Now)
	b.clock = clock
	return b
}

// setupOn is setup on the clock now.
func setupOn(t *testing.T, now func() time.Time) *bundle {
	t.Helper()
	sb := sandbox.New(sandbox.Options{Clock: now})
	sb.SetHealthSyncPlan(account, -1)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	a, err := healthsync.New(healthsync.Options{BaseURL: srv.URL + sandbox.HealthSyncPath, Clock: now,
		HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	require.NoError(t, err)
	st, rdb := storetest.New(t, now)
	oldID, oldKey := sb.AddHealthSyncKey(account, scopes)
	_, err = st.Upsert(t.Context(), store.NewCredential{ID: credID, Vendor: vendor, Keys: store.Keys{APIKey: secret.New(oldKey)}})
	require.NoError(t, err)
	return &bundle{now: now, sb: sb, st: st, rdb: rdb, oldID: oldID, oldKey: oldKey, adapter: a,
		vendor: rotation.Vendor{Keys: rotation.HealthSyncKeys{Adapter: a}, RotateEvery: every, KeyIsToken: true,
			TokenLifetime: healthsync.APIKeyVerifyPeriod}}
}

func (b *bundle) rotator(t *testing.T, owner string, hook func(rotation.Point) error) *rotation.Rotator {
	t.Helper()
	r, err := rotation.New(rotation.Options{
		Store: b.st, Owner: owner, Hold: lease, Clock: b.now, Rand: func() float64 { return 0 }, Hook: hook,
		Vendor: func(name string) (rotation.Vendor, bool) { return b.vendor, name == vendor },
	})
	require.NoError(t, err)
	return r
}

// outbox returns the events written so far.
func (b *bundle) outbox(t *testing.T) []events.Envelope {
	t.Helper()
	msgs, err := b.rdb.XRange(t.Context(), events.OutboxKey("t:"), "-", "+").Result()
	require.NoError(t, err)
	var out []events.Envelope
	for _, m := range msgs {
		var ev events.Envelope
		require.NoError(t, json.Unmarshal([]byte(m.Values["event"].(string)), &ev))
		out = append(out, ev)
	}
	return out
}

func (b *bundle) rawOutbox(t *testing.T) string {
	t.Helper()
	msgs, err := b.rdb.XRange(t.Context(), events.OutboxKey("t:"), "-", "+").Result()
	require.NoError(t, err)
	raw, err := json.Marshal(msgs)
	require.NoError(t, err)
	return string(raw)
}

func liveKeys(keys []sandbox.HealthSyncKey) []sandbox.HealthSyncKey {
	var out []sandbox.HealthSyncKey
	for _, k := range keys {
		if !k.Revoked {
			out = append(out, k)
		}
	}
	return out
}

var errCrash = errors.New("crash injected by the test")

// TestCrashResumeAtEveryStep stops a rotation at every point between two
// steps, as a crash would (the lease is kept), runs it again from another
// worker once the lease has run out, and checks what the vendor holds and
// what was written to the outbox: one live key, the new one; the old one
// revoked; any key created but not recorded revoked too; key.rotated then
// key.revoked (reason rotated), once each, with fingerprints only.
func TestCrashResumeAtEveryStep(t *testing.T) {
	t.Parallel()
	for _, point := range []rotation.Point{
		rotation.BeforeCreate, rotation.AfterCreate, rotation.BeforeVerify,
		rotation.BeforeSwitch, rotation.BeforeRevoke, rotation.AfterRevoke,
	} {
		t.Run(string(point), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			crashed := false
			first := b.rotator(t, "worker-a", func(p rotation.Point) error {
				if p == point && !crashed {
					crashed = true
					return errCrash
				}
				return nil
			})
			_, err := first.Rotate(ctx, credID)
			require.ErrorIs(t, err, errCrash)

			// While the crashed worker's lease holds, nobody else resumes.
			second := b.rotator(t, "worker-b", nil)
			_, err = second.Rotate(ctx, credID)
			var busy *store.BusyError
			require.ErrorAs(t, err, &busy)

			keys := b.sb.HealthSyncKeys(account)
			oldRevoked := keys[0].Revoked
			require.Equal(t, point == rotation.AfterRevoke, oldRevoked, "the old key is revoked only after the switch")
			require.LessOrEqual(t, len(liveKeys(keys)), 2, "never two new keys alive")

			b.clock.Advance(lease + time.Second)
			rot, err := second.Rotate(ctx, credID)
			require.NoError(t, err)
			require.Equal(t, store.RotationDone, rot.Step)

			// The vendor's key set: the old key revoked, one live key, the new one.
			keys = b.sb.HealthSyncKeys(account)
			live := liveKeys(keys)
			require.Len(t, live, 1)
			require.Equal(t, rot.NewKeyID, live[0].ID)
			require.Equal(t, scopes, live[0].Scopes)
			require.Equal(t, b.oldID, keys[0].ID)
			require.True(t, keys[0].Revoked)
			wantKeys := 2
			if point == rotation.AfterCreate {
				wantKeys = 3 // the key whose creation was not recorded, revoked
			}
			require.Len(t, keys, wantKeys)

			// The credential uses the new key, as its token too.
			cred, err := b.st.Get(ctx, credID)
			require.NoError(t, err)
			require.Equal(t, rot.NewFingerprint, cred.APIKey.Fingerprint())
			require.Equal(t, cred.APIKey.Reveal(), cred.Token.AccessToken.Reveal())
			require.NoError(t, b.adapter.VerifyKey(ctx, cred.APIKey))
			require.Error(t, b.adapter.VerifyKey(ctx, secret.New(b.oldKey)))
			require.Equal(t, int64(1), cred.Generation)

			// The events: once each, in order, fingerprints only.
			evs := b.outbox(t)
			var types []string
			for _, ev := range evs {
				types = append(types, ev.Type)
			}
			require.Equal(t, []string{events.TypeKeyRotated, events.TypeTokenRenewed, events.TypeKeyRevoked}, types)
			var rotated events.KeyRotated
			require.NoError(t, json.Unmarshal(evs[0].Data, &rotated))
			require.Equal(t, secret.New(b.oldKey).Fingerprint(), rotated.OldKeyFingerprint)
			require.Equal(t, rot.NewFingerprint, rotated.NewKeyFingerprint)
			require.Equal(t, "key.rotated.hs.hs-1", evs[0].Subject)
			var revoked events.KeyRevoked
			require.NoError(t, json.Unmarshal(evs[2].Data, &revoked))
			require.Equal(t, events.ReasonRotated, revoked.Reason)
			require.Equal(t, secret.New(b.oldKey).Fingerprint(), revoked.KeyFingerprint)
			raw := b.rawOutbox(t)
			require.NotContains(t, raw, b.oldKey)
			require.NotContains(t, raw, cred.APIKey.Reveal())

			// The next rotation is scheduled rotate_every from now.
			due, ok, err := b.st.RotationDue(ctx, credID)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, b.clock.Now().Add(every).UnixMilli(), due.UnixMilli())

			// Rotating again is a new rotation that starts from the new key.
			again, err := second.Rotate(ctx, credID)
			require.NoError(t, err)
			require.NotEqual(t, rot.ID, again.ID)
			require.Len(t, liveKeys(b.sb.HealthSyncKeys(account)), 1)
		})
	}
}

// TestVerificationFailureKeepsOldKey: a new key that fails verification is
// revoked, the rotation is aborted and tried again later, and the old key
// is never touched.
func TestVerificationFailureKeepsOldKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	r := b.rotator(t, "worker-a", func(p rotation.Point) error {
		if p == rotation.BeforeVerify {
			rot, err := b.st.GetRotation(ctx, credID)
			require.NoError(t, err)
			// HealthSync refuses the new key's read (403): definitive.
			require.NoError(t, b.sb.Inject(sandbox.Fault{ClientID: rot.NewKeyID, Endpoint: sandbox.EndpointPatient,
				Kind: sandbox.FaultServerError, Status: http.StatusForbidden}))
		}
		return nil
	})
	rot, err := r.Rotate(ctx, credID)
	require.ErrorIs(t, err, rotation.ErrAborted)
	require.Equal(t, store.RotationAborted, rot.Step)
	require.Contains(t, rot.LastError, "verification")

	keys := b.sb.HealthSyncKeys(account)
	require.Len(t, keys, 2)
	require.False(t, keys[0].Revoked, "the old key is never revoked when the new one fails")
	require.True(t, keys[1].Revoked, "the failed new key is not left behind")
	cred, err := b.st.Get(ctx, credID)
	require.NoError(t, err)
	require.Equal(t, b.oldKey, cred.APIKey.Reveal())
	require.Empty(t, b.outbox(t), "no key.rotated, no key.revoked")
	due, ok, err := b.st.RotationDue(ctx, credID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, b.clock.Now().Add(24*time.Hour).UnixMilli(), due.UnixMilli())
}

// TestTransientFailureResumes: a 5xx while creating leaves the rotation to
// be resumed by the next try, at once (the lease is released), and the
// resumed rotation leaves one new key.
func TestTransientFailureResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultServerError, Status: 503, Times: 1}))
	r := b.rotator(t, "worker-a", nil)
	_, err := r.Rotate(ctx, credID)
	require.Error(t, err)
	require.NotErrorIs(t, err, rotation.ErrAborted)
	rot, err := b.rotator(t, "worker-b", nil).Rotate(ctx, credID)
	require.NoError(t, err)
	require.Equal(t, store.RotationDone, rot.Step)
	require.Len(t, liveKeys(b.sb.HealthSyncKeys(account)), 1)
}

func TestNotSupported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.vendor.Keys = nil
	_, err := b.rotator(t, "w", nil).Rotate(t.Context(), credID)
	require.ErrorIs(t, err, rotation.ErrNotSupported)
	_, err = b.rotator(t, "w", nil).Rotate(t.Context(), "nope")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// TestRevokeAtVendor: an operator's revocation revokes the key at
// HealthSync, and settles a rotation in progress so that its new key is
// not left alive.
func TestRevokeAtVendor(t *testing.T) {
	t.Parallel()
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		cred, err := b.st.Get(t.Context(), credID)
		require.NoError(t, err)
		require.NoError(t, b.rotator(t, "w", nil).RevokeAtVendor(t.Context(), cred))
		keys := b.sb.HealthSyncKeys(account)
		require.Len(t, keys, 1)
		require.True(t, keys[0].Revoked)
		// A key the vendor refuses already: nothing more to do.
		require.NoError(t, b.rotator(t, "w", nil).RevokeAtVendor(t.Context(), cred))
	})
	t.Run("rotation in progress", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		_, err := b.rotator(t, "w", func(p rotation.Point) error {
			if p == rotation.BeforeSwitch {
				return errCrash
			}
			return nil
		}).Rotate(ctx, credID)
		require.ErrorIs(t, err, errCrash)
		require.Len(t, liveKeys(b.sb.HealthSyncKeys(account)), 2)
		cred, err := b.st.Get(ctx, credID)
		require.NoError(t, err)
		require.NoError(t, b.rotator(t, "w", nil).RevokeAtVendor(ctx, cred))
		require.Empty(t, liveKeys(b.sb.HealthSyncKeys(account)), "the old key and the rotation's new key are revoked")
		rot, err := b.st.GetRotation(ctx, credID)
		require.NoError(t, err)
		require.Equal(t, store.RotationAborted, rot.Step)
		_, ok, err := b.st.RotationDue(ctx, credID)
		require.NoError(t, err)
		require.False(t, ok, "a revoked credential is not rotated again")
	})
	t.Run("vendor without key management", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.vendor.Keys = nil
		cred, err := b.st.Get(t.Context(), credID)
		require.NoError(t, err)
		require.NoError(t, b.rotator(t, "w", nil).RevokeAtVendor(t.Context(), cred))
		require.False(t, b.sb.HealthSyncKeys(account)[0].Revoked)
	})
}

// TestSchedulerEnqueuesDueRotations: a credential of a rotating vendor
// gets its first rotation rotate_every after it is first seen, and is
// handed to the queue once when due.
func TestSchedulerEnqueuesDueRotations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	_, err := b.st.Upsert(ctx, store.NewCredential{ID: "other", Vendor: "halaxy", ClientID: "c", Keys: store.Keys{ClientSecret: secret.New("s")}})
	require.NoError(t, err)
	var queued []string
	s, err := rotation.NewScheduler(rotation.SchedulerOptions{
		Store: b.st, Clock: b.clock.Now,
		Enqueue:     func(_ context.Context, id string) error { queued = append(queued, id); return nil },
		RotateEvery: func(v string) time.Duration { return map[string]time.Duration{vendor: every}[v] },
	})
	require.NoError(t, err)
	n, err := s.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = s.Reconcile(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a scheduled credential keeps its time")

	_, err = s.Tick(ctx)
	require.NoError(t, err)
	require.Empty(t, queued)
	b.clock.Advance(every)
	_, err = s.Tick(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{credID}, queued)
	_, err = s.Tick(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{credID}, queued, "claimed once")

	// Run stops with its context.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	cancel()
	require.NoError(t, <-done)
	require.False(t, strings.Contains(strings.Join(queued, ","), "other"))
}

// TestSchedulerResumesOrphanedRotation: a rotation whose job still shows
// running while its hold has lapsed (its worker died) is handed to Resume,
// once per lapse; the resumption finishes it, and the dead worker's own
// request, run again, does not rotate a second time.
func TestSchedulerResumesOrphanedRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	task := store.RotationRequest{ID: "task-1"}
	crash := errors.New("worker killed")
	_, err := b.rotator(t, "w1", func(p rotation.Point) error {
		if p == rotation.AfterCreate {
			return crash
		}
		return nil
	}).RotateFor(ctx, credID, task)
	require.ErrorIs(t, err, crash)

	running := []string{credID}
	var resumed []store.Rotation
	s, err := rotation.NewScheduler(rotation.SchedulerOptions{
		Store: b.st, Clock: b.clock.Now,
		Enqueue:     func(context.Context, string) error { return nil },
		RotateEvery: func(string) time.Duration { return every },
		Running:     func(context.Context) ([]string, error) { return running, nil },
		Resume:      func(_ context.Context, r store.Rotation) error { resumed = append(resumed, r); return nil },
	})
	require.NoError(t, err)
	n, err := s.ResumeOrphans(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the hold has not lapsed: its holder may be alive")

	b.clock.Advance(lease + time.Millisecond)
	running = nil
	n, err = s.ResumeOrphans(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a rotation whose job is not running (waiting for a retry) keeps asynq's pace")
	running = []string{credID}
	n, err = s.ResumeOrphans(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Len(t, resumed, 1)
	require.Equal(t, store.RotationCreating, resumed[0].Step)

	rot, err := b.rotator(t, "w2", nil).RotateFor(ctx, credID, store.RotationRequest{ID: "resume-1", ResumeOnly: true})
	require.NoError(t, err)
	require.Equal(t, resumed[0].ID, rot.ID)
	require.Equal(t, store.RotationDone, rot.Step)
	require.Len(t, liveKeys(b.sb.HealthSyncKeys(account)), 1, "the key whose answer was lost is revoked")
	n, err = s.ResumeOrphans(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a finished rotation is not resumed")

	_, err = b.rotator(t, "w3", nil).RotateFor(ctx, credID, task)
	require.ErrorIs(t, err, store.ErrRotationDone, "the dead worker's job, recovered, does not rotate twice")
	again, err := b.st.GetRotation(ctx, credID)
	require.NoError(t, err)
	require.Equal(t, rot.ID, again.ID)
}
