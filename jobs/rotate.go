package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

// TypeKeyRotate is the type name of a key rotation task.
const TypeKeyRotate = "key:rotate"

// Rotate asks for the rotation of a credential's key: create a new key,
// verify it, switch, revoke the old one (package rotation). A rotation in
// progress is resumed where it stopped, so duplicates are harmless.
type Rotate struct {
	Credential string `json:"credential"`
	// Resume, set on the tasks NewResumeRotationTask builds, only resumes
	// the rotation in progress: it never begins one.
	Resume bool `json:"resume,omitempty"`
}

// Kind implements Payload.
func (Rotate) Kind() string { return TypeKeyRotate }

// RotateUniqueFor is how long a queued rotation of a credential keeps
// another from being queued (asynq.Unique; a rotation that ends frees it).
const RotateUniqueFor = time.Hour

// NewRotateTask builds the rotation task of a credential on the critical
// queue. While one is queued or running, enqueueing another fails with
// asynq.ErrDuplicateTask.
func NewRotateTask(credential string) (*asynq.Task, error) {
	return NewTask(Rotate{Credential: credential},
		asynq.Queue(QueueCritical),
		asynq.Unique(RotateUniqueFor),
		asynq.MaxRetry(10),
		asynq.Timeout(2*time.Minute),
	)
}

// NewResumeRotationTask builds the task that resumes the rotation of a
// credential whose holder died (its hold lapsed while its task still shows
// active, until asynq's lease recovery, one to two minutes later). The
// task id names the rotation and the hold that lapsed, so that schedulers
// noticing the same lapse queue it once; it is not Unique, as the dead
// worker's task keeps that lock.
func NewResumeRotationTask(credential, rotationID string, holdLapsed time.Time) (*asynq.Task, error) {
	return NewTask(Rotate{Credential: credential, Resume: true},
		asynq.Queue(QueueCritical),
		asynq.TaskID(fmt.Sprintf("%s:resume:%s:%s:%d", TypeKeyRotate, credential, rotationID, holdLapsed.UnixMilli())),
		asynq.MaxRetry(10),
		asynq.Timeout(2*time.Minute),
	)
}

// Rotator runs a key rotation to its end, on behalf of a request (see
// store.RotationRequest).
type Rotator interface {
	RotateFor(ctx context.Context, credential string, req store.RotationRequest) (store.Rotation, error)
}

// RotateHandler runs key:rotate tasks.
type RotateHandler struct {
	Rotator Rotator
	// Logger receives one line per outcome; never a secret.
	Logger zerolog.Logger
}

// Handle runs one rotation. A rotation that cannot be done (unknown or
// revoked credential, a vendor that cannot rotate, a rotation given up and
// scheduled again later, one taken over by another worker) is not
// retried; any other failure is, and the retry resumes the rotation where
// it stopped.
func (h *RotateHandler) Handle(ctx context.Context, p Rotate) error {
	log := h.Logger.With().Str("credential", p.Credential).Logger()
	// The task id names the request: run again after its worker died, a
	// task whose rotation was finished by a resume does not rotate twice.
	taskID, _ := asynq.GetTaskID(ctx)
	rot, err := h.Rotator.RotateFor(ctx, p.Credential, store.RotationRequest{ID: taskID, ResumeOnly: p.Resume})
	var busy *store.BusyError
	var wait *rotation.WaitError
	switch {
	case err == nil:
		log.Info().Str("rotation", rot.ID).Str("new_key_fingerprint", rot.NewFingerprint).Msg("key rotated")
		return nil
	case errors.Is(err, rotation.ErrNotSupported), errors.Is(err, rotation.ErrAborted),
		errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrAlreadyRevoked):
		log.Warn().Err(err).Msg("key rotation not done")
		return fmt.Errorf("jobs: rotate %s: %w: %w", p.Credential, err, asynq.SkipRetry)
	case errors.Is(err, store.ErrRotationDone):
		log.Info().Msg("key rotation finished already (resumed by another worker)")
		return nil
	case errors.Is(err, rotation.ErrHoldLost):
		// The worker that took it over finishes it.
		log.Warn().Err(err).Msg("key rotation taken over by another worker")
		return fmt.Errorf("jobs: rotate %s: %w: %w", p.Credential, err, asynq.SkipRetry)
	case errors.As(err, &wait):
		// Runs again when the old key may go, not at asynq's backoff.
		log.Info().Time("until", wait.Until).Msg("key rotation switched; the old key is kept a while, retrying then")
		return retryAt(fmt.Errorf("jobs: rotate %s: %w", p.Credential, err), wait.Until, "rotation_hold")
	case errors.As(err, &busy):
		log.Info().Time("until", busy.Until).Msg("key rotation held by another worker; retrying when its hold ends")
		return retryAt(fmt.Errorf("jobs: rotate %s: %w", p.Credential, err), busy.Until, "rotation_busy")
	default:
		log.Warn().Err(err).Str("step", string(rot.Step)).Msg("key rotation stopped; the retry resumes it")
		return fmt.Errorf("jobs: rotate %s: %w", p.Credential, err)
	}
}

// retryAt adds a *RetryAt for at to err, so that the task runs again then
// and not at asynq's backoff; without a time ahead, err is left to that
// backoff.
func retryAt(err error, at time.Time, reason string) error {
	if !at.After(time.Now()) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, &RetryAt{At: at, Reason: reason})
}
