package rotation_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"

	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// hold is the rotation hold of these tests, on the real clock.
const hold = 2 * time.Second

// stallingKeys is a vendor whose Create blocks, whatever its context says,
// until release is closed (a worker frozen in a vendor call, or a slow
// vendor), then creates the key.
type stallingKeys struct {
	rotation.KeyManager
	entered     chan struct{} // closed when Create is first called
	release     chan struct{}
	enteredOnce sync.Once
	verified    chan struct{} // closed if Verify is called
	verifyOnce  sync.Once
}

func newStallingKeys(k rotation.KeyManager) *stallingKeys {
	return &stallingKeys{KeyManager: k, entered: make(chan struct{}), release: make(chan struct{}), verified: make(chan struct{})}
}

func (s *stallingKeys) Create(ctx context.Context, cred vendors.Credential, scopes []string, name string) (rotation.Key, error) {
	s.enteredOnce.Do(func() { close(s.entered) })
	<-s.release
	return s.KeyManager.Create(context.WithoutCancel(ctx), cred, scopes, name)
}

func (s *stallingKeys) Verify(ctx context.Context, cred vendors.Credential) error {
	s.verifyOnce.Do(func() { close(s.verified) })
	return s.KeyManager.Verify(ctx, cred)
}

// holdRotator is a worker's rotator on the real clock, holding rotations
// for hold, with keys as its vendor's key manager.
func (b *bundle) holdRotator(t *testing.T, owner string, keys rotation.KeyManager, logs *testenv.Buffer) *rotation.Rotator {
	t.Helper()
	v := b.vendor
	v.Keys = keys
	r, err := rotation.New(rotation.Options{
		Store: b.st, Owner: owner, Hold: hold, Clock: b.now, Rand: func() float64 { return 0 }, Logger: zerolog.New(logs),
		Vendor: func(name string) (rotation.Vendor, bool) { return v, name == vendor },
	})
	require.NoError(t, err)
	return r
}

// startStalled runs a rotation by worker-a whose key creation stalls, and
// returns once the vendor call is in flight, with the vendor, the context
// cancel of the rotation and the channel of its result; worker-a logs to
// logs.
func (b *bundle) startStalled(t *testing.T, logs *testenv.Buffer) (*stallingKeys, context.CancelFunc, <-chan error) {
	t.Helper()
	stall := newStallingKeys(b.vendor.Keys)
	t.Cleanup(func() {
		select {
		case <-stall.release:
		default:
			close(stall.release)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	a := b.holdRotator(t, "worker-a", stall, logs)
	go func() { _, err := a.Rotate(ctx, credID); done <- err }()
	select {
	case <-stall.entered:
	case err := <-done:
		t.Fatalf("worker-a stopped before creating the key: %v", err)
	}
	return stall, cancel, done
}

// TestDeadHolderResumedWithinHold: the worker holding a rotation dies
// while creating the key (its vendor call never returns and its context
// ends: nothing renews the hold, nothing releases it); another worker,
// trying as the key:rotate retry would (when the hold it is told of ends),
// completes the rotation within the hold, not after a fixed 5-minute
// lease, and the dead worker's late key is cleaned up.
func TestDeadHolderResumedWithinHold(t *testing.T) {
	t.Parallel()
	b := setupOn(t, time.Now)
	ctx := t.Context()
	stall, kill, deadDone := b.startStalled(t, &testenv.Buffer{})
	kill()
	died := time.Now()

	second := b.holdRotator(t, "worker-b", b.vendor.Keys, &testenv.Buffer{})
	var rot store.Rotation
	require.Eventually(t, func() bool {
		var err error
		rot, err = second.Rotate(ctx, credID)
		var busy *store.BusyError
		if errors.As(err, &busy) {
			// What the job's retry waits for: the hold's end, not minutes.
			assert.WithinDuration(t, died.Add(hold), busy.Until, hold, "retry at the hold's end")
			return false
		}
		return assert.NoError(t, err)
	}, hold+5*time.Second, 20*time.Millisecond, "another worker resumes the rotation once the dead one's hold ends")
	took := time.Since(died)
	require.Equal(t, store.RotationDone, rot.Step)
	require.Less(t, took, hold+time.Second, "completed within the hold and a margin")
	require.GreaterOrEqual(t, took, hold-500*time.Millisecond, "not before the dead holder's hold ended")

	// The dead worker wakes up: its late key is not recorded, but revoked.
	close(stall.release)
	require.Error(t, <-deadDone)
	live := liveKeys(b.sb.HealthSyncKeys(account))
	require.Len(t, live, 1, "never two live new keys")
	require.Equal(t, rot.NewKeyID, live[0].ID)
	cred, err := b.st.Get(ctx, credID)
	require.NoError(t, err)
	require.Equal(t, rot.NewFingerprint, cred.APIKey.Fingerprint())
}

// TestLiveHolderKeepsHoldThroughLongStep: a vendor call that lasts longer
// than the hold does not let another worker in, since the holder renews
// its hold while the call runs; the rotation then completes.
func TestLiveHolderKeepsHoldThroughLongStep(t *testing.T) {
	t.Parallel()
	b := setupOn(t, time.Now)
	ctx := t.Context()
	stall, _, done := b.startStalled(t, &testenv.Buffer{})

	second := b.holdRotator(t, "worker-b", b.vendor.Keys, &testenv.Buffer{})
	require.Never(t, func() bool {
		_, err := second.Rotate(ctx, credID)
		var busy *store.BusyError
		return !errors.As(err, &busy)
	}, 3*hold, 50*time.Millisecond, "the live holder keeps its hold through a step of three holds")

	close(stall.release)
	require.NoError(t, <-done)
	rot, err := b.st.GetRotation(ctx, credID)
	require.NoError(t, err)
	require.Equal(t, store.RotationDone, rot.Step)
	require.Len(t, liveKeys(b.sb.HealthSyncKeys(account)), 1)
}

// TestLostHoldStopsBeforeNextStep: a holder whose hold was taken over
// while its vendor call ran does not go on to the next vendor call: it
// revokes the key it got (not recorded) and stops with ErrHoldLost,
// leaving the rotation to the new holder.
func TestLostHoldStopsBeforeNextStep(t *testing.T) {
	t.Parallel()
	b := setupOn(t, time.Now)
	ctx := t.Context()
	logs := &testenv.Buffer{}
	stall, _, done := b.startStalled(t, logs)
	// Another worker took the rotation over (as if this one's hold had
	// lapsed): the next renewal finds it lost; then the call returns.
	require.NoError(t, b.rdb.HSet(ctx, "t:rot:"+credID, "owner", "worker-b").Err())
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "taken over by another worker")
	}, 2*hold, 10*time.Millisecond, "the heartbeat finds the hold lost")
	close(stall.release)
	err := <-done
	require.ErrorIs(t, err, rotation.ErrHoldLost)
	select {
	case <-stall.verified:
		t.Fatal("the key was verified after the hold was lost")
	default:
	}
	rot, err := b.st.GetRotation(ctx, credID)
	require.NoError(t, err)
	require.Equal(t, store.RotationCreating, rot.Step, "nothing recorded by the worker that lost the hold")
	require.Equal(t, "worker-b", rot.Owner)
	live := liveKeys(b.sb.HealthSyncKeys(account))
	require.Len(t, live, 1, "the key created after the hold was lost is revoked")
	require.Equal(t, b.oldID, live[0].ID)
}
