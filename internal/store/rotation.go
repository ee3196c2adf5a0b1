package store

// Key rotations, persisted step by step so that a rotation interrupted at
// any point resumes where it stopped (package rotation drives them):
//
//	P rot:<id>       hash  the rotation of a credential's key, current or last
//	P rotate_due     zset  id -> when its next rotation is due (unix ms)
//
// The rotation hash holds the step, the rotation id, the attempt and name of
// the key creation (recorded before the vendor is asked to create it), the
// old key's vendor id and fingerprint, the new key's vendor id, fingerprint
// and, until the rotation ends, the new key itself (sealed), and the owner
// and lease of the worker driving it.

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/secret"
)

//go:embed lua/rotate_begin.lua
var luaRotateBegin string

//go:embed lua/rotate_advance.lua
var luaRotateAdvance string

//go:embed lua/rotate_switch.lua
var luaRotateSwitch string

//go:embed lua/rotate_finish.lua
var luaRotateFinish string

//go:embed lua/rotate_claim_due.lua
var luaRotateClaimDue string

var (
	scriptRotateBegin    = newScript(luaRotateBegin)
	scriptRotateAdvance  = newScript(luaRotateAdvance)
	scriptRotateSwitch   = newScript(luaRotateSwitch)
	scriptRotateFinish   = newScript(luaRotateFinish)
	scriptRotateClaimDue = newScript(luaRotateClaimDue)
)

// RotationStep is where a key rotation stands.
type RotationStep string

// The steps of a rotation, in order; done and aborted end it.
const (
	RotationPlanned  RotationStep = "planned"  // started; nothing asked of the vendor yet
	RotationCreating RotationStep = "creating" // the new key's name recorded; the vendor may have created it
	RotationCreated  RotationStep = "created"  // the new key recorded (sealed)
	RotationVerified RotationStep = "verified" // the new key works
	RotationSwitched RotationStep = "switched" // the credential uses the new key; the old one still lives
	RotationDone     RotationStep = "done"     // the old key is revoked
	RotationAborted  RotationStep = "aborted"  // given up before the switch; the old key untouched
)

// Finished reports whether the step ends a rotation.
func (s RotationStep) Finished() bool { return s == RotationDone || s == RotationAborted }

// Rotation fields of the rotation hash.
const (
	rRID        = "rid"
	rStep       = "step"
	rAttempt    = "attempt"
	rKeyName    = "key_name"
	rOldKeyID   = "old_key_id"
	rOldFP      = "old_fp"
	rScopes     = "scopes" // JSON list
	rNewKeyID   = "new_key_id"
	rNewKey     = "new_key" // sealed
	rNewFP      = "new_fp"
	rOldPub     = "old_pub" // public JWK of the old key (signing keys)
	rNewPub     = "new_pub" // public JWK of the new key (signing keys)
	rStarted    = "started_at"
	rUpdated    = "updated_at"
	rSwitched   = "switched_at"
	rFinished   = "finished_at"
	rLastError  = "last_error"
	rOwner      = "owner"
	rLeaseUntil = "lease_until"
	rVendor     = "vendor" // the credential's vendor when the rotation began
)

// Rotation is the state of a credential's key rotation.
type Rotation struct {
	Credential string
	// ID names this rotation (fresh for each one); the vendor-side name of
	// its new key is derived from it.
	ID   string
	Step RotationStep
	// Vendor is the credential's vendor when the rotation began: the new
	// key is sealed bound to it.
	Vendor string
	// Attempt counts the key creations asked of the vendor; KeyName is the
	// name of the last one, recorded before it was asked.
	Attempt int
	KeyName string
	// OldKeyID is the vendor's id of the key being replaced, OldFingerprint
	// its fingerprint, Scopes its permissions (the new key gets the same).
	OldKeyID       string
	OldFingerprint string
	Scopes         []string
	// NewKeyID, NewKey and NewFingerprint are the new key, from the step
	// created on; NewKey is dropped when the rotation ends.
	NewKeyID       string
	NewKey         secret.Value
	NewFingerprint string
	// OldPublic and NewPublic are the public halves of signing keys (a
	// JWK), for vendors that fetch them from a JWKS tokenrelay serves;
	// public data, kept in clear.
	OldPublic  string
	NewPublic  string
	Owner      string
	LeaseUntil time.Time
	StartedAt  time.Time
	UpdatedAt  time.Time
	SwitchedAt time.Time
	FinishedAt time.Time
	// LastError says why a rotation was aborted; secret-free.
	LastError string
}

// RotationChange is what one step records; zero fields are left as they
// are.
type RotationChange struct {
	Step           RotationStep
	Attempt        int
	KeyName        string
	OldKeyID       string
	OldFingerprint string
	Scopes         []string
	NewKeyID       string
	NewKey         secret.Value
	NewFingerprint string
	OldPublic      string
	NewPublic      string
	LastError      string
}

// KeySwitch is what the switch step of a rotation puts in the credential.
type KeySwitch struct {
	// Keys replace the credential's keys (all of them: carry over those
	// that do not change).
	Keys Keys
	// Token, when not nil, becomes the current token at the next
	// generation, scheduled for refresh at NextRefresh: for vendors whose
	// key is itself the bearer token, so that nobody is handed the old key
	// once it is revoked.
	Token       *Token
	NextRefresh time.Time
}

// BeginRotation starts a rotation of a credential's key for owner, held
// until lease has passed, or, when one is in progress and nobody else holds
// it, hands that one to owner to resume. It fails with ErrNotFound, with
// ErrAlreadyRevoked for a revoked credential (unless a rotation of it is in
// progress: that one is handed over, to be cleaned up), and with a
// *BusyError while another owner holds the rotation.
func (s *Store) BeginRotation(ctx context.Context, id, owner string, lease time.Duration) (Rotation, error) {
	return s.BeginRotationFor(ctx, id, owner, lease, RotationRequest{})
}

// RotationRequest says which request a rotation serves.
type RotationRequest struct {
	// ID names the request (the asynq task id of the rotation job). The
	// rotation it begins records it, and once that rotation has finished
	// the same request begins no other (ErrRotationDone): a job run again
	// after its worker died, whose rotation another worker resumed and
	// finished meanwhile, must not rotate the key a second time. "" for
	// none.
	ID string
	// ResumeOnly hands over the rotation in progress and never begins one
	// (ErrRotationDone when none is in progress).
	ResumeOnly bool
}

// ErrRotationDone: the rotation a request asked for has finished already.
var ErrRotationDone = errors.New("store: the rotation asked for has finished")

// BeginRotationFor is BeginRotation on behalf of req.
func (s *Store) BeginRotationFor(ctx context.Context, id, owner string, lease time.Duration, req RotationRequest) (Rotation, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	now := s.now()
	reply, err := s.runAcked(ctx, opBeginRotation, scriptRotateBegin, []string{s.credKey(id), s.rotKey(id)},
		hex.EncodeToString(b[:]), owner, ms(now), ms(now.Add(lease)), req.ID, resumeOnly(req.ResumeOnly)).Slice()
	if err != nil {
		return Rotation{}, fmt.Errorf("store: begin rotation %s: %w", id, err)
	}
	status, rest := splitReply(reply)
	switch {
	case status == replyOK && len(rest) == 1:
		pairs, _ := rest[0].([]any)
		r, err := s.decodeRotation(id, fieldsFromPairs(pairs))
		if err != nil {
			return Rotation{}, fmt.Errorf("store: begin rotation %s: %w", id, err)
		}
		return r, nil
	case status == replyBusy && len(rest) == 1:
		until, err := fields{rLeaseUntil: str(rest[0])}.time(rLeaseUntil)
		if err != nil {
			return Rotation{}, fmt.Errorf("store: begin rotation %s: %w", id, err)
		}
		return Rotation{}, fmt.Errorf("store: begin rotation %s: %w", id, &BusyError{Until: until})
	case status == replyRevoked:
		return Rotation{}, fmt.Errorf("store: begin rotation %s: %w", id, ErrAlreadyRevoked)
	case status == replyDone:
		return Rotation{}, fmt.Errorf("store: begin rotation %s: %w", id, ErrRotationDone)
	default:
		return Rotation{}, refusal("begin rotation", id, status)
	}
}

func resumeOnly(b bool) string {
	if b {
		return "1"
	}
	return ""
}

// GetRotation returns the current or last rotation of a credential, or
// ErrNotFound when it never had one.
func (s *Store) GetRotation(ctx context.Context, id string) (Rotation, error) {
	m, err := s.rdb.HGetAll(ctx, s.rotKey(id)).Result()
	if err != nil {
		return Rotation{}, fmt.Errorf("store: get rotation %s: %w", id, err)
	}
	if len(m) == 0 {
		return Rotation{}, fmt.Errorf("store: get rotation %s: %w", id, ErrNotFound)
	}
	r, err := s.decodeRotation(id, fields(m))
	if err != nil {
		return Rotation{}, fmt.Errorf("store: get rotation %s: %w", id, err)
	}
	return r, nil
}

// AdvanceRotation records c, provided owner still holds the rotation r and
// it is still at r.Step (else ErrStale, and nothing is written), extends
// the owner's lease to lease from now (a zero lease releases the rotation,
// for another worker to resume at once), and applies c to r.
func (s *Store) AdvanceRotation(ctx context.Context, r *Rotation, owner string, lease time.Duration, c RotationChange) error {
	now := s.now()
	leaseEnd := ""
	if lease > 0 {
		leaseEnd = ms(now.Add(lease))
	}
	args := []any{r.ID, owner, string(r.Step), ms(now), leaseEnd}
	set := func(field, value string) {
		if value != "" {
			args = append(args, field, value)
		}
	}
	set(rStep, string(c.Step))
	if c.Attempt != 0 {
		set(rAttempt, strconv.Itoa(c.Attempt))
	}
	set(rKeyName, c.KeyName)
	set(rOldKeyID, c.OldKeyID)
	set(rOldFP, c.OldFingerprint)
	if c.Scopes != nil {
		raw, _ := json.Marshal(c.Scopes)
		set(rScopes, string(raw))
	}
	set(rNewKeyID, c.NewKeyID)
	sealed, err := s.seal(r.Credential, r.Vendor, rNewKey, c.NewKey)
	if err != nil {
		return fmt.Errorf("store: advance rotation %s: %w", r.Credential, err)
	}
	set(rNewKey, sealed)
	set(rNewFP, c.NewFingerprint)
	set(rOldPub, c.OldPublic)
	set(rNewPub, c.NewPublic)
	set(rLastError, secret.Truncate(c.LastError, maxErrorLen))
	reply, err := s.runAcked(ctx, opAdvanceRotation, scriptRotateAdvance, []string{s.rotKey(r.Credential)}, args...).Slice()
	if err != nil {
		return fmt.Errorf("store: advance rotation %s: %w", r.Credential, err)
	}
	if status, _ := splitReply(reply); status != replyOK {
		return refusal("advance rotation", r.Credential, status)
	}
	r.apply(c)
	r.UpdatedAt = now
	if lease > 0 {
		r.LeaseUntil = now.Add(lease)
	} else {
		r.Owner, r.LeaseUntil = "", time.Time{}
	}
	return nil
}

func (r *Rotation) apply(c RotationChange) {
	if c.Step != "" {
		r.Step = c.Step
	}
	if c.Attempt != 0 {
		r.Attempt = c.Attempt
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{
		{&r.KeyName, c.KeyName}, {&r.OldKeyID, c.OldKeyID}, {&r.OldFingerprint, c.OldFingerprint},
		{&r.NewKeyID, c.NewKeyID}, {&r.NewFingerprint, c.NewFingerprint}, {&r.LastError, c.LastError},
		{&r.OldPublic, c.OldPublic}, {&r.NewPublic, c.NewPublic},
	} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	if c.Scopes != nil {
		r.Scopes = c.Scopes
	}
	if !c.NewKey.IsZero() {
		r.NewKey = c.NewKey
	}
}

// SwitchRotation puts the verified new key of rotation r in the credential
// (sw) and appends evs (key.rotated, and token.renewed when sw.Token is
// set) to the outbox, all in one atomic step, provided owner holds r at
// step verified and the credential is still at generation gen: else
// ErrStale (read the credential again and retry), ErrNotFound, or
// ErrAlreadyRevoked. r moves to RotationSwitched.
func (s *Store) SwitchRotation(ctx context.Context, r *Rotation, owner string, gen int64, sw KeySwitch, evs ...events.Envelope) error {
	id := r.Credential
	bundle, err := sw.Keys.encode()
	if err != nil {
		return fmt.Errorf("store: switch rotation %s: %w", id, err)
	}
	vendors, err := s.vendorsOf(ctx, []string{id})
	if err != nil {
		return fmt.Errorf("store: switch rotation %s: %w", id, err)
	}
	vendor := vendors[0]
	sealed, err := s.seal(id, vendor, fClientSecret, bundle)
	if err != nil {
		return fmt.Errorf("store: switch rotation %s: %w", id, err)
	}
	now := s.now()
	args := []any{id, r.ID, owner, gen, ms(now), sealed, bundle.Fingerprint()}
	if t := sw.Token; t != nil {
		if t.AccessToken.IsZero() || sw.NextRefresh.IsZero() {
			return fmt.Errorf("store: switch rotation %s: a token needs an access token and a next refresh time", id)
		}
		access, err := s.seal(id, vendor, fAccessToken, t.AccessToken)
		if err != nil {
			return fmt.Errorf("store: switch rotation %s: %w", id, err)
		}
		args = append(args, "1", gen+1, access, t.TokenType, ms(t.IssuedAt), ms(t.ExpiresAt), ms(sw.NextRefresh))
	} else {
		args = append(args, "", "", "", "", "", "", "")
	}
	args = append(args, vendor)
	for _, ev := range evs {
		evArgs, err := eventArgs(ev)
		if err != nil {
			return fmt.Errorf("store: switch rotation %s: %w", id, err)
		}
		args = append(args, evArgs...)
	}
	reply, err := s.runAcked(ctx, opSwitchRotation, scriptRotateSwitch, []string{s.credKey(id), s.rotKey(id), s.due, s.outbox}, args...).Slice()
	if err != nil {
		return fmt.Errorf("store: switch rotation %s: %w", id, err)
	}
	switch status, _ := splitReply(reply); status {
	case replyOK:
		r.Step, r.SwitchedAt, r.UpdatedAt = RotationSwitched, now, now
		return nil
	case replyRevoked:
		return fmt.Errorf("store: switch rotation %s: %w", id, ErrAlreadyRevoked)
	default:
		return refusal("switch rotation", id, status)
	}
}

// FinishRotation ends rotation r at step to (RotationDone or
// RotationAborted), provided owner holds it at r.Step (else ErrStale),
// keeps message as its last error, appends evs to the outbox, drops the
// sealed new key and the owner's lease, and schedules the credential's next
// rotation at nextDue (zero: none), all in one atomic step.
func (s *Store) FinishRotation(ctx context.Context, r *Rotation, owner string, to RotationStep, nextDue time.Time, message string, evs ...events.Envelope) error {
	if !to.Finished() {
		return fmt.Errorf("store: finish rotation %s: step %q does not end a rotation", r.Credential, to)
	}
	now := s.now()
	args := []any{r.Credential, r.ID, owner, string(r.Step), string(to), ms(now), ms(nextDue), secret.Truncate(message, maxErrorLen)}
	for _, ev := range evs {
		evArgs, err := eventArgs(ev)
		if err != nil {
			return fmt.Errorf("store: finish rotation %s: %w", r.Credential, err)
		}
		args = append(args, evArgs...)
	}
	reply, err := s.runAcked(ctx, opFinishRotation, scriptRotateFinish, []string{s.rotKey(r.Credential), s.rotateDueKey(), s.outbox}, args...).Slice()
	if err != nil {
		return fmt.Errorf("store: finish rotation %s: %w", r.Credential, err)
	}
	if status, _ := splitReply(reply); status != replyOK {
		return refusal("finish rotation", r.Credential, status)
	}
	r.Step, r.FinishedAt, r.UpdatedAt, r.LastError = to, now, now, message
	r.NewKey, r.Owner, r.LeaseUntil = secret.Value{}, "", time.Time{}
	return nil
}

// ScheduleRotation sets when a credential's next rotation is due.
func (s *Store) ScheduleRotation(ctx context.Context, id string, at time.Time) error {
	if err := s.rdb.ZAdd(ctx, s.rotateDueKey(), redis.Z{Score: float64(at.UnixMilli()), Member: id}).Err(); err != nil {
		return fmt.Errorf("store: schedule rotation %s: %w", id, err)
	}
	return nil
}

// ScheduleRotations schedules the rotation of each of ids that has none at
// at, leaving those that have one alone (the scheduler's reconciliation),
// and returns how many it scheduled.
func (s *Store) ScheduleRotations(ctx context.Context, ids []string, at time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	zs := make([]redis.Z, len(ids))
	for i, id := range ids {
		zs[i] = redis.Z{Score: float64(at.UnixMilli()), Member: id}
	}
	n, err := s.rdb.ZAddNX(ctx, s.rotateDueKey(), zs...).Result()
	if err != nil {
		return 0, fmt.Errorf("store: schedule rotations: %w", err)
	}
	return int(n), nil
}

// UnscheduleRotation takes a credential out of the rotation schedule.
func (s *Store) UnscheduleRotation(ctx context.Context, id string) error {
	if err := s.rdb.ZRem(ctx, s.rotateDueKey(), id).Err(); err != nil {
		return fmt.Errorf("store: unschedule rotation %s: %w", id, err)
	}
	return nil
}

// RotationDue says when a credential's next rotation is due; ok is false
// when it is not scheduled.
func (s *Store) RotationDue(ctx context.Context, id string) (at time.Time, ok bool, err error) {
	score, err := s.rdb.ZScore(ctx, s.rotateDueKey(), id).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return time.Time{}, false, nil
		}
		return time.Time{}, false, fmt.Errorf("store: rotation due %s: %w", id, err)
	}
	return time.UnixMilli(int64(score)).UTC(), true, nil
}

// ClaimDueRotations returns up to limit credentials whose rotation is due at
// now and moves each one's due time to now+lease, so that another scheduler
// does not take it too and a lost job brings it back.
func (s *Store) ClaimDueRotations(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]string, error) {
	if limit <= 0 || lease <= 0 || now.IsZero() {
		return nil, fmt.Errorf("store: claim due rotations: need a time, and a positive limit (%d) and lease (%s)", limit, lease)
	}
	ids, err := scriptRotateClaimDue.Run(ctx, s.rdb, []string{s.rotateDueKey()}, ms(now), limit, ms(now.Add(lease))).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("store: claim due rotations: %w", err)
	}
	return ids, nil
}

func (s *Store) decodeRotation(id string, f fields) (Rotation, error) {
	r := Rotation{
		Credential: id, ID: f[rRID], Step: RotationStep(f[rStep]), KeyName: f[rKeyName],
		OldKeyID: f[rOldKeyID], OldFingerprint: f[rOldFP], NewKeyID: f[rNewKeyID], NewFingerprint: f[rNewFP],
		Owner: f[rOwner], LastError: f[rLastError], OldPublic: f[rOldPub], NewPublic: f[rNewPub],
		Vendor: f[rVendor],
	}
	attempt, err := f.int(rAttempt)
	if err != nil {
		return Rotation{}, err
	}
	r.Attempt = int(attempt)
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{rLeaseUntil, &r.LeaseUntil}, {rStarted, &r.StartedAt}, {rUpdated, &r.UpdatedAt}, {rSwitched, &r.SwitchedAt}, {rFinished, &r.FinishedAt}} {
		if *t.dst, err = f.time(t.name); err != nil {
			return Rotation{}, err
		}
	}
	if raw := f[rScopes]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &r.Scopes); err != nil {
			return Rotation{}, fmt.Errorf("field %s is not a JSON list", rScopes)
		}
	}
	if sealed := f[rNewKey]; sealed != "" {
		plain, _, err := s.openField(id, r.Vendor, rNewKey, sealed)
		if err != nil {
			return Rotation{}, err
		}
		r.NewKey = secret.New(string(plain))
	}
	return r, nil
}
