package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// BuildRotationVendors makes, for every configured vendor instance that can
// rotate keys, what its rotations need: healthsync vendors in mode api_key
// (key management through the adapter) and redox vendors (signing keys
// published in the worker's JWKS; the old key stays published for the
// token lifetime and two minutes of JWKS caching after the switch). The
// others are absent: their credentials cannot be rotated (a redox-legacy
// secret is regenerated in Redox's dashboard, which has no API for it).
func BuildRotationVendors(cfg *config.Config, hc *http.Client) (map[string]rotation.Vendor, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	out := map[string]rotation.Vendor{}
	for name, v := range cfg.Vendors {
		v.Name = name
		rv, ok, err := rotationVendor(v, hc)
		if err != nil {
			return nil, fmt.Errorf("vendors.%s: %w", name, err)
		}
		if ok {
			out[name] = rv
		}
	}
	return out, nil
}

// rotationVendor is what the rotations of vendor v need, by the way its
// kind rotates keys (package vendors/kind); ok is false when its keys
// cannot be rotated.
func rotationVendor(v config.Vendor, hc *http.Client) (rv rotation.Vendor, ok bool, err error) {
	method := v.KeyRotation()
	if method == kind.NoRotation {
		return rotation.Vendor{}, false, nil
	}
	spec, _ := v.Spec()
	a, err := v.NewAdapter(hc)
	if err != nil {
		return rotation.Vendor{}, false, err
	}
	switch method {
	case kind.RotateSigningKeys:
		life := time.Duration(v.MaxTokenLifetime)
		if life <= 0 {
			life = spec.MaxTokenLifetime
		}
		return rotation.Vendor{Keys: rotation.RedoxKeys{Tokens: a}, RotateEvery: time.Duration(v.RotateEvery),
			RevokeOldAfter: life + 2*time.Minute}, true, nil
	case kind.RotateAPIKeys:
		keys, isHS := a.(*healthsync.Adapter)
		if !isHS {
			return rotation.Vendor{}, false, fmt.Errorf("kind %s rotates API keys, which only the healthsync adapter manages", v.Kind)
		}
		renewal := policy.Renewal{At: v.RefreshAt, Jitter: v.RefreshJitter}
		if v.RefreshJitter == 0 {
			renewal.Jitter = -1
		}
		return rotation.Vendor{
			Keys:          rotation.HealthSyncKeys{Adapter: keys},
			RotateEvery:   time.Duration(v.RotateEvery),
			KeyIsToken:    true,
			TokenLifetime: policy.EffectiveLifetime(spec.APIKeyLifetime, time.Duration(v.MaxTokenLifetime)),
			Renewal:       renewal,
		}, true, nil
	}
	return rotation.Vendor{}, false, fmt.Errorf("kind %s: unknown key rotation %d", v.Kind, method)
}

// newRotator makes the worker's rotator, holding a rotation for
// scheduler.rotation_hold past its last renewal.
func newRotator(env *Env, hc *http.Client, log zerolog.Logger) (*rotation.Rotator, error) {
	vends, err := BuildRotationVendors(env.Config, hc)
	if err != nil {
		return nil, err
	}
	return rotation.New(rotation.Options{
		Store: env.Store, Clock: env.Clock, Logger: log.With().Str("component", "rotation").Logger(),
		Vendor: func(name string) (rotation.Vendor, bool) { v, ok := vends[name]; return v, ok },
		Hold:   time.Duration(env.Config.Scheduler.RotationHold),
	})
}

// rotateNow is admin.Deps.RotateNow: it queues a key:rotate task.
func rotateNow(env *Env) func(ctx context.Context, c store.Credential) error {
	client := asynq.NewClientFromRedisClient(env.Redis)
	return func(ctx context.Context, c store.Credential) error {
		if !canRotate(env.Config, c.Vendor) {
			return fmt.Errorf("%w (vendor %s: only redox vendors and healthsync vendors in mode api_key rotate keys)", admin.ErrCannotRotate, c.Vendor)
		}
		return enqueueRotation(ctx, client, c.ID)
	}
}

// canRotate reports whether the keys of vendor's credentials can be
// rotated (its kind, in its mode, can).
func canRotate(cfg *config.Config, vendor string) bool {
	v, ok := cfg.Vendors[vendor]
	return ok && v.KeyRotation() != kind.NoRotation
}

// redoxSigningKeys is the KeySource of the worker's JWKS route.
func redoxSigningKeys(env *Env) redox.KeySource {
	return rotation.JWKSKeys(env.Store, func(vendor string) bool {
		return env.Config.Vendors[vendor].KeyRotation() == kind.RotateSigningKeys
	})
}

// enqueueRotation queues the key:rotate task of a credential; one queued or
// running already is success.
func enqueueRotation(ctx context.Context, client *asynq.Client, id string) error {
	task, err := jobs.NewRotateTask(id)
	if err != nil {
		return err
	}
	_, err = client.EnqueueContext(ctx, task)
	if errors.Is(err, asynq.ErrDuplicateTask) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("app: queue the rotation of %s: %w", id, err)
	}
	return nil
}

// newRotationScheduler makes the scheduler role's loop that queues key
// rotations as they fall due, from each vendor's rotate_every, and resumes
// at once those whose worker died mid-rotation.
func newRotationScheduler(env *Env, log zerolog.Logger) (*rotation.Scheduler, error) {
	client := asynq.NewClientFromRedisClient(env.Redis)
	inspector := asynq.NewInspectorFromRedisClient(env.Redis)
	return rotation.NewScheduler(rotation.SchedulerOptions{
		Running: func(context.Context) ([]string, error) { return runningRotations(inspector) },
		Resume: func(ctx context.Context, rot store.Rotation) error {
			task, err := jobs.NewResumeRotationTask(rot.Credential, rot.ID, rot.LeaseUntil)
			if err != nil {
				return err
			}
			_, err = client.EnqueueContext(ctx, task)
			if errors.Is(err, asynq.ErrTaskIDConflict) {
				return nil // queued already, by this scheduler or another
			}
			return err
		},
		Store: env.Store, Clock: env.Clock, Logger: log.With().Str("component", "rotation").Logger(),
		Enqueue: func(ctx context.Context, id string) error { return enqueueRotation(ctx, client, id) },
		RotateEvery: func(vendor string) time.Duration {
			if !canRotate(env.Config, vendor) {
				return 0
			}
			return time.Duration(env.Config.Vendors[vendor].RotateEvery)
		},
	})
}

// activePageSize is how many running tasks runningRotations reads at once.
const activePageSize = 500

// runningRotations lists the credentials whose key:rotate task asynq shows
// active (running, or left so by a worker that died). The active tasks are
// few: one per worker slot, and those of dead workers.
func runningRotations(inspector *asynq.Inspector) ([]string, error) {
	var ids []string
	for page := 1; ; page++ {
		tasks, err := inspector.ListActiveTasks(jobs.QueueCritical, asynq.PageSize(activePageSize), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("app: list running tasks: %w", err)
		}
		for _, t := range tasks {
			if t.Type != jobs.TypeKeyRotate {
				continue
			}
			var p jobs.Rotate
			if err := json.Unmarshal(t.Payload, &p); err == nil && p.Credential != "" {
				ids = append(ids, p.Credential)
			}
		}
		if len(tasks) < activePageSize {
			return ids, nil
		}
	}
}
