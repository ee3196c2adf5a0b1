package rotation

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Errors.
var (
	// ErrNotSupported: the credential's vendor cannot rotate keys (or is
	// not configured to). Retrying cannot help.
	ErrNotSupported = errors.New("rotation: the credential's vendor cannot rotate keys")
	// ErrHoldLost: another worker took the rotation over, this one having
	// failed to renew its hold in time; this one stops before its next
	// vendor call and leaves the rotation to the other.
	ErrHoldLost = errors.New("rotation: the rotation was taken over by another worker")
	// ErrAborted: the rotation was given up before the switch (the new key
	// failed verification, the vendor refused to create it, or the
	// credential was revoked); the old key is untouched and the new one,
	// if any, revoked. Retrying now cannot help; the rotation is scheduled
	// again later.
	ErrAborted = errors.New("rotation: aborted")
)

// Key is a vendor's API or signing key as a rotation sees it.
type Key struct {
	// ID is the vendor's id of the key.
	ID   string
	Name string
	// Secret is the key itself: set by Create only (a vendor shows a key
	// once).
	Secret      secret.Value
	Scopes      []string
	Fingerprint string
	Revoked     bool
	// Public is the public JWK of a signing key (redox), published in the
	// credential's JWKS while the rotation needs it; "" for API keys.
	Public string
}

// KeyManager is what a rotation needs of a vendor that issues keys. Every
// method is one vendor call and classifies its failures as vendors.Error
// does (vendors.ErrRevoked for a definitive refusal).
type KeyManager interface {
	// Current describes the key cred authenticates with.
	Current(ctx context.Context, cred vendors.Credential) (Key, error)
	// Create creates a key named name with scopes, authenticated by cred.
	Create(ctx context.Context, cred vendors.Credential, scopes []string, name string) (Key, error)
	// List lists the keys of cred's account.
	List(ctx context.Context, cred vendors.Credential) ([]Key, error)
	// Verify checks that cred (holding the new key, see Use) works.
	Verify(ctx context.Context, cred vendors.Credential) error
	// Revoke revokes the key keyID, authenticated by cred; a key already
	// revoked or unknown is success.
	Revoke(ctx context.Context, cred vendors.Credential, keyID string) error
	// Use returns keys with the key k in place of the one they hold.
	Use(keys store.Keys, k Key) store.Keys
}

// Vendor is one configured vendor instance as rotations see it.
type Vendor struct {
	// Keys manages the vendor's keys; nil means the vendor cannot rotate.
	Keys KeyManager
	// RotateEvery is how often a credential's key is rotated on schedule;
	// 0: only when asked.
	RotateEvery time.Duration
	// KeyIsToken says the key is itself the bearer token (HealthSync API
	// keys): the switch makes it the current token, for TokenLifetime,
	// renewed as Renewal says.
	KeyIsToken    bool
	TokenLifetime time.Duration
	Renewal       policy.Renewal
	// RevokeOldAfter is how long after the switch the old key is revoked
	// (redox: the old signing key stays in the JWKS until assertions and
	// tokens made with it have expired). Default 0: at once.
	RevokeOldAfter time.Duration
}

// WaitError says a step cannot be taken before Until (the old signing key
// is still published for tokens made with it); try again then.
type WaitError struct{ Until time.Time }

func (e *WaitError) Error() string {
	return "rotation: the old key is kept until " + e.Until.UTC().Format(time.RFC3339)
}

// Store is what a Rotator needs of the credential store.
type Store interface {
	Get(ctx context.Context, id string) (store.Credential, error)
	GetRotation(ctx context.Context, id string) (store.Rotation, error)
	BeginRotationFor(ctx context.Context, id, owner string, lease time.Duration, req store.RotationRequest) (store.Rotation, error)
	AdvanceRotation(ctx context.Context, r *store.Rotation, owner string, lease time.Duration, c store.RotationChange) error
	SwitchRotation(ctx context.Context, r *store.Rotation, owner string, gen int64, sw store.KeySwitch, evs ...events.Envelope) error
	FinishRotation(ctx context.Context, r *store.Rotation, owner string, to store.RotationStep, nextDue time.Time, message string, evs ...events.Envelope) error
	UnscheduleRotation(ctx context.Context, id string) error
}

// Point is a place in a rotation where Options.Hook is called.
type Point string

// The points, in the order a rotation passes them.
const (
	BeforeCreate Point = "before_create" // the creation intent is recorded
	AfterCreate  Point = "after_create"  // the vendor created the key; not yet recorded
	BeforeVerify Point = "before_verify" // the new key is recorded
	BeforeSwitch Point = "before_switch" // the new key is verified
	BeforeRevoke Point = "before_revoke" // switched; the old key still lives
	AfterRevoke  Point = "after_revoke"  // the vendor revoked the old key; not yet recorded
)

// Options configure a Rotator.
type Options struct {
	Store Store
	// Vendor looks up a vendor instance by its configured name.
	Vendor func(name string) (Vendor, bool)
	// Owner names this worker in the rotations it holds. Default: host,
	// process id and a random suffix.
	Owner string
	// Hold is how long a rotation stays held by a worker that stops
	// renewing it (one that crashed) before another may resume it. The
	// holder renews it before each vendor call and every Hold/3 while one
	// runs, so a live holder keeps it however long a call takes. Default
	// DefaultHold.
	Hold time.Duration
	// RetryAbortedAfter is when an aborted rotation is tried again.
	// Default 24h.
	RetryAbortedAfter time.Duration
	Logger            zerolog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Rand returns a number in [0, 1) for renewal jitter; default math/rand.
	Rand func() float64
	// Hook, when set, is called at each Point; an error stops the rotation
	// right there as a crash would (the hold is kept): for tests.
	Hook func(Point) error
}

// DefaultHold is Options.Hold's default: a rotation whose worker died
// resumes within it.
const DefaultHold = 30 * time.Second

// Rotator drives key rotations. It is safe for concurrent use.
type Rotator struct{ o Options }

// New fills the defaults of o and returns a Rotator.
func New(o Options) (*Rotator, error) {
	if o.Store == nil || o.Vendor == nil {
		return nil, errors.New("rotation: a store and a vendor lookup are required")
	}
	if o.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = crand.Read(b[:])
		o.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if o.Hold <= 0 {
		o.Hold = DefaultHold
	}
	if o.RetryAbortedAfter <= 0 {
		o.RetryAbortedAfter = 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return &Rotator{o: o}, nil
}

// crashError is a Hook's error: the rotation stops as if the process died.
type crashError struct{ err error }

func (e *crashError) Error() string { return e.err.Error() }
func (e *crashError) Unwrap() error { return e.err }

// Rotate runs the rotation of credential id to its end, starting one or
// resuming the one in progress, and returns where it stands. It fails with
// ErrNotSupported, ErrAborted, store.ErrNotFound, store.ErrAlreadyRevoked,
// a *store.BusyError while another worker holds the rotation, or the
// vendor's or store's error of the step that failed (retry later: the
// rotation resumes there).
func (r *Rotator) Rotate(ctx context.Context, id string) (store.Rotation, error) {
	return r.RotateFor(ctx, id, store.RotationRequest{})
}

// RotateFor is Rotate on behalf of req (see store.RotationRequest): it
// also fails with store.ErrRotationDone when the rotation req asked for
// has finished already (nothing to do).
func (r *Rotator) RotateFor(ctx context.Context, id string, req store.RotationRequest) (store.Rotation, error) {
	cred, err := r.o.Store.Get(ctx, id)
	if err != nil {
		return store.Rotation{}, fmt.Errorf("rotation: %s: %w", id, err)
	}
	v, ok := r.o.Vendor(cred.Vendor)
	if !ok || v.Keys == nil {
		return store.Rotation{}, fmt.Errorf("rotation: %s (vendor %s): %w", id, cred.Vendor, ErrNotSupported)
	}
	rot, err := r.o.Store.BeginRotationFor(ctx, id, r.o.Owner, r.o.Hold, req)
	if errors.Is(err, store.ErrAlreadyRevoked) {
		_ = r.o.Store.UnscheduleRotation(ctx, id)
	}
	if err != nil {
		return store.Rotation{}, fmt.Errorf("rotation: %w", err)
	}
	run := &run{r: r, v: v, cred: cred, rot: rot, log: r.o.Logger.With().Str("credential", id).Str("vendor", cred.Vendor).Str("rotation", rot.ID).Logger()}
	err = run.drive(ctx)
	if err != nil && !rot.Step.Finished() && !run.rot.Step.Finished() {
		var crash *crashError
		if !errors.As(err, &crash) && !errors.Is(err, ErrHoldLost) {
			// Let the next try resume at once rather than when the hold ends.
			if rerr := r.o.Store.AdvanceRotation(context.WithoutCancel(ctx), &run.rot, r.o.Owner, 0, store.RotationChange{}); rerr != nil {
				run.log.Warn().Err(rerr).Msg("rotation: release failed; it resumes when its hold ends")
			}
		}
	}
	// The adapters quote vendors scrubbed already; this is the last line of
	// defence before the error reaches asynq's task error and the log.
	return run.rot, cred.Scrubber().Add(run.rot.NewKey).Error(err)
}

// run is one Rotate call.
type run struct {
	r    *Rotator
	v    Vendor
	cred store.Credential
	rot  store.Rotation
	log  zerolog.Logger
}

func (u *run) hook(p Point) error {
	if u.r.o.Hook == nil {
		return nil
	}
	if err := u.r.o.Hook(p); err != nil {
		return &crashError{err}
	}
	return nil
}

// drive runs the steps from where the rotation stands.
func (u *run) drive(ctx context.Context) error {
	if u.cred.State == store.StateRevoked && !u.rot.Step.Finished() {
		return u.abort(ctx, "the credential was revoked", time.Time{})
	}
	resumed := u.rot.Step != store.RotationPlanned || u.rot.Attempt > 0
	if resumed && !u.rot.Step.Finished() {
		u.log.Info().Str("step", string(u.rot.Step)).Msg("rotation resumed")
	}
	for {
		var err error
		switch u.rot.Step {
		case store.RotationPlanned:
			err = u.plan(ctx)
		case store.RotationCreating:
			err = u.create(ctx, resumed)
			resumed = true
		case store.RotationCreated:
			err = u.verify(ctx)
		case store.RotationVerified:
			err = u.switchKey(ctx)
		case store.RotationSwitched:
			err = u.revokeOld(ctx)
		case store.RotationDone:
			return nil
		case store.RotationAborted:
			return fmt.Errorf("rotation: %s: %w: %s", u.cred.ID, ErrAborted, u.rot.LastError)
		default:
			return fmt.Errorf("rotation: %s: unknown step %q", u.cred.ID, u.rot.Step)
		}
		if err != nil {
			return err
		}
	}
}

func (u *run) advance(ctx context.Context, c store.RotationChange) error {
	if err := u.r.o.Store.AdvanceRotation(ctx, &u.rot, u.r.o.Owner, u.r.o.Hold, c); err != nil {
		return fmt.Errorf("rotation: %s: record %s: %w", u.cred.ID, c.Step, err)
	}
	return nil
}

// call makes one vendor call, fn, under the rotation's hold: it renews the
// hold first (failing with ErrHoldLost, without calling the vendor, when
// another worker has taken the rotation over), then renews it every Hold/3
// until fn returns, so that a live holder keeps it however long the call
// takes while a dead one's lapses within Hold. When a renewal finds the
// hold lost meanwhile, call fails with ErrHoldLost once fn has returned
// (fn's result is not to be recorded, only cleaned up).
func (u *run) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := u.renew(ctx, &u.rot); err != nil {
		return err
	}
	beat, stop := context.WithCancel(ctx)
	lost := make(chan error, 1)
	r := u.rot
	go func() { lost <- u.heartbeat(beat, r) }()
	err := fn(ctx)
	stop()
	if herr := <-lost; herr != nil {
		return herr
	}
	return err
}

// renew extends the hold of owner on r to Hold from now, fenced as any
// step is (the rotation, its owner and its step): a zero change.
func (u *run) renew(ctx context.Context, r *store.Rotation) error {
	err := u.r.o.Store.AdvanceRotation(ctx, r, u.r.o.Owner, u.r.o.Hold, store.RotationChange{})
	if errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("rotation: %s: at step %s: %w", u.cred.ID, r.Step, ErrHoldLost)
	}
	if err != nil {
		return fmt.Errorf("rotation: %s: renew the hold: %w", u.cred.ID, err)
	}
	return nil
}

// heartbeat renews the hold on (a copy of) r every Hold/3 until ctx ends,
// and returns ErrHoldLost as soon as a renewal finds it lost. A renewal
// that fails otherwise (Redis unreachable) is tried again at the next
// beat; if the hold lapses meanwhile, the next step's fenced write tells.
func (u *run) heartbeat(ctx context.Context, r store.Rotation) error {
	t := time.NewTicker(u.r.o.Hold / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			err := u.renew(ctx, &r)
			if errors.Is(err, ErrHoldLost) {
				u.log.Warn().Str("step", string(r.Step)).Msg("rotation: taken over by another worker; stopping after the vendor call in flight")
				return err
			}
			if err != nil && ctx.Err() == nil {
				u.log.Warn().Err(err).Msg("rotation: renewing the hold failed; retrying at the next beat")
			}
		}
	}
}

// oldCred is the credential authenticating with the key being replaced.
func (u *run) oldCred() vendors.Credential {
	return vendorCred(u.cred.ID, u.cred.ClientID, u.cred.Keys)
}

// newCred is the credential authenticating with the new key.
func (u *run) newCred() vendors.Credential {
	return vendorCred(u.cred.ID, u.cred.ClientID, u.v.Keys.Use(u.cred.Keys, u.newKey()))
}

func (u *run) newKey() Key {
	return Key{ID: u.rot.NewKeyID, Secret: u.rot.NewKey, Fingerprint: u.rot.NewFingerprint, Scopes: u.rot.Scopes}
}

func vendorCred(id, clientID string, k store.Keys) vendors.Credential {
	return vendors.Credential{ID: id, ClientID: clientID, ClientSecret: k.ClientSecret,
		PrivateKey: k.PrivateKey, KeyID: k.KeyID, APIKey: k.APIKey}
}

// definitive reports whether a vendor's refusal cannot be helped by
// retrying: a refused key, a 4xx other than 429.
func definitive(err error) bool {
	switch vendors.Classify(err) {
	case vendors.ClassRevoked, vendors.ClassRejected:
		return true
	}
	return false
}
