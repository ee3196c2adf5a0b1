package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// The rotation steps a worker can be SIGKILLed in, named by the vendor
// call it is making.
const (
	stepCreate = "create" // POST keys: the new key is created, its answer lost
	stepVerify = "verify" // GET records with the new key
	stepRevoke = "revoke" // DELETE keys/{id}: the old key is revoked, the answer lost
)

// rotationCredential and rotationAccount are the HealthSync credential of
// the rotation scenario and its account at the sandbox.
const (
	rotationCredential = "hs-chaos"
	rotationAccount    = "acct-chaos"
)

// rotationOptions shape the rotation scenario (issue 12, point 5).
type rotationOptions struct {
	Hold   time.Duration // scheduler.rotation_hold; 0: the default
	KillAt []string      // steps whose vendor call gets its worker SIGKILLed, in order
	// Resume bounds how long after each kill another worker must carry the
	// rotation on (and finish it, after the last kill).
	Resume time.Duration
	// WatchAfter, when positive, keeps watching that long after the
	// rotation finished: the dead workers' own tasks, recovered by asynq
	// meanwhile, must not begin another rotation.
	WatchAfter time.Duration
}

// vendorCall is one request a worker made to the vendor.
type vendorCall struct {
	Slot     string
	Instance int
	At       time.Time
	Step     string // create, verify, revoke, or "" for another call
}

// rotationReport is what the rotation scenario found.
type rotationReport struct {
	Hold        time.Duration
	Kills       []kill
	KillSteps   []string
	Resumed     []time.Duration // kill -> next vendor call of another process
	Finished    time.Duration   // last kill -> rotation done
	Rotations   int             // key.rotated events
	Revocations int             // key.revoked events
	Violations  []string
	Dir         string
}

// rotationCrash runs one HealthSync API-key rotation on one scheduler and
// two workers, SIGKILLing the worker making each vendor call named in
// ro.KillAt, and judges: after each kill another worker carries on within
// ro.Resume, the rotation finishes, the vendor ends with the old key (and
// any key created while its answer was lost) revoked and one live key, the
// credential's, and the stream holds one key.rotated and one key.revoked.
func rotationCrash(ctx context.Context, o options, ro rotationOptions) (*rotationReport, error) {
	o.Credentials, o.Schedulers, o.Workers = 0, 1, 2
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = time.Hour
	}
	c := &cluster{opts: o}
	var (
		mu       sync.Mutex
		armed    bool
		oldKey   string
		killIdx  int
		calls    []vendorCall
		kills    []kill
		killStep []string
	)
	onCall := func(slot string, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !armed {
			return
		}
		step := rotationStep(r, oldKey)
		w := c.worker(slot)
		calls = append(calls, vendorCall{Slot: slot, Instance: w.current(), At: time.Now(), Step: step})
		if killIdx < len(ro.KillAt) && step == ro.KillAt[killIdx] {
			// Killed before the vendor answers: the call goes on at the
			// vendor, its answer is lost.
			if k, ok := w.kill(); ok {
				kills = append(kills, k)
				killStep = append(killStep, step)
				killIdx++
				c.progress("SIGKILL %s (start %d) while it asks the vendor to %s", k.Slot, k.Instance, step)
			}
		}
	}
	prepare := func(ctx context.Context, c *cluster) (layout, error) {
		if err := controlCall(ctx, http.MethodPut, c.sandboxURL+sandbox.ControlPath+"healthsync/accounts/"+rotationAccount+"/plan",
			map[string]any{"limit": -1}, nil); err != nil {
			return layout{}, err
		}
		var key struct{ ID, Key string }
		if err := controlCall(ctx, http.MethodPost, c.sandboxURL+sandbox.ControlPath+"healthsync/keys",
			map[string]any{"account": rotationAccount, "scopes": []string{"records:read", "patients:read"}}, &key); err != nil {
			return layout{}, err
		}
		mu.Lock()
		oldKey = key.Key
		mu.Unlock()
		c.creds = []string{rotationCredential}
		l := layout{
			vendor: func(baseURL string) map[string]any {
				return map[string]any{"kind": "healthsync", "base_url": baseURL + sandbox.HealthSyncPath,
					"max_token_lifetime": o.TokenLifetime.String()}
			},
			credentials: []map[string]any{{"id": rotationCredential, "vendor": vendorName, "api_key": key.Key}},
			onCall:      onCall,
		}
		if ro.Hold > 0 {
			l.scheduler = map[string]any{"rotation_hold": ro.Hold.String()}
		}
		return l, nil
	}
	env, err := c.start(ctx, prepare)
	if err != nil {
		return nil, err
	}
	defer c.teardown()
	defer env.Close()
	rep := &rotationReport{Hold: ro.Hold, Dir: c.dir}
	if rep.Hold == 0 {
		rep.Hold = time.Duration(env.Config.Scheduler.RotationHold)
	}
	bad := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}

	if err := waitFor(ctx, time.Minute, func() (bool, error) {
		cred, err := env.Store.Get(ctx, rotationCredential)
		return err == nil && cred.Generation >= 1, nil
	}); err != nil {
		return nil, fmt.Errorf("chaos: the API key was not verified: %w", err)
	}
	mu.Lock()
	armed = true
	mu.Unlock()
	task, err := jobs.NewRotateTask(rotationCredential)
	if err != nil {
		return nil, err
	}
	if _, err := asynq.NewClientFromRedisClient(env.Redis).EnqueueContext(ctx, task); err != nil {
		return nil, fmt.Errorf("chaos: queue the rotation: %w", err)
	}
	c.progress("rotation of %s queued; SIGKILLs at %s (rotation_hold %s)", rotationCredential, strings.Join(ro.KillAt, ", "), rep.Hold)
	limit := ro.Resume * time.Duration(len(ro.KillAt)+1)
	var rot store.Rotation
	doneErr := waitFor(ctx, limit, func() (bool, error) {
		rot, err = env.Store.GetRotation(ctx, rotationCredential)
		return err == nil && rot.Step.Finished(), nil
	})
	finished := time.Now()
	mu.Lock()
	rep.Kills, rep.KillSteps = slices.Clone(kills), slices.Clone(killStep)
	callLog := slices.Clone(calls)
	mu.Unlock()
	if doneErr != nil {
		bad("the rotation did not finish within %s of being queued (step %s)", limit, rot.Step)
	} else if rot.Step != store.RotationDone {
		bad("the rotation ended %s: %s", rot.Step, rot.LastError)
	}
	if len(rep.Kills) != len(ro.KillAt) {
		bad("%d of the %d kills happened (steps killed: %v)", len(rep.Kills), len(ro.KillAt), rep.KillSteps)
	}
	for _, k := range rep.Kills {
		i := slices.IndexFunc(callLog, func(v vendorCall) bool {
			return v.At.After(k.At) && (v.Slot != k.Slot || v.Instance != k.Instance)
		})
		if i < 0 {
			bad("no worker carried the rotation on after %s was killed", k.Slot)
			continue
		}
		d := callLog[i].At.Sub(k.At)
		rep.Resumed = append(rep.Resumed, d)
		if d > ro.Resume {
			bad("the rotation was carried on %s after %s was killed, more than %s", d.Round(time.Millisecond), k.Slot, ro.Resume)
		}
	}
	if n := len(rep.Kills); n > 0 && doneErr == nil {
		rep.Finished = finished.Sub(rep.Kills[n-1].At)
		if rep.Finished > ro.Resume {
			bad("the rotation finished %s after the last kill, more than %s", rep.Finished.Round(time.Millisecond), ro.Resume)
		}
	}

	if ro.WatchAfter > 0 && doneErr == nil {
		c.progress("rotation done; watching %s for a second rotation from the dead workers' tasks", ro.WatchAfter)
		sleepCtx(ctx, ro.WatchAfter)
		again, err := env.Store.GetRotation(ctx, rotationCredential)
		if err != nil {
			return nil, err
		}
		if again.ID != rot.ID {
			bad("another rotation (%s, step %s) began after the rotation finished", again.ID, again.Step)
		}
	}
	c.checkKeys(ctx, env.Store, rot, bad)
	others := rotationEvents(ctx, env.JS, env.Config.NATS.Stream)
	rep.Rotations, rep.Revocations = others[events.TypeKeyRotated], others[events.TypeKeyRevoked]
	if rep.Rotations != 1 || rep.Revocations != 1 {
		bad("the stream holds %d key.rotated and %d key.revoked events, want 1 and 1", rep.Rotations, rep.Revocations)
	}
	return rep, nil
}

// worker is the worker slot named slot.
func (c *cluster) worker(slot string) *role {
	for _, w := range c.workers {
		if w.slot == slot {
			return w
		}
	}
	panic("chaos: no worker slot " + slot)
}

// rotationStep names the rotation step a vendor call belongs to, "" for
// another call (the old key's own verification).
func rotationStep(r *http.Request, oldKey string) string {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/keys"):
		return stepCreate
	case r.Method == http.MethodDelete && strings.Contains(path, "/keys/"):
		return stepRevoke
	case r.Method == http.MethodGet && strings.HasSuffix(path, "/records") && !headersHold(r.Header, oldKey):
		return stepVerify
	}
	return ""
}

func headersHold(h http.Header, v string) bool {
	for _, vs := range h {
		for _, s := range vs {
			if strings.Contains(s, v) {
				return true
			}
		}
	}
	return false
}

// checkKeys checks the vendor's keys after rotation rot: every key
// revoked but the new one, which the credential holds.
func (c *cluster) checkKeys(ctx context.Context, st *store.Store, rot store.Rotation, bad func(string, ...any)) {
	var keys []struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Revoked bool   `json:"revoked"`
	}
	if err := controlCall(ctx, http.MethodGet, c.sandboxURL+sandbox.ControlPath+"healthsync/accounts/"+rotationAccount+"/keys", nil, &keys); err != nil {
		bad("cannot list the vendor's keys: %v", err)
		return
	}
	live := 0
	for _, k := range keys {
		if !k.Revoked {
			live++
			if k.ID != rot.NewKeyID {
				bad("key %s (%s) is live at the vendor, but the rotation's new key is %s", k.ID, k.Name, rot.NewKeyID)
			}
		}
	}
	if live != 1 {
		bad("%d live keys at the vendor, want 1 (%d keys in all)", live, len(keys))
	}
	cred, err := st.Get(ctx, rotationCredential)
	if err != nil {
		bad("cannot read the credential: %v", err)
		return
	}
	if cred.APIKey.Fingerprint() != rot.NewFingerprint {
		bad("the credential holds key %s, not the rotation's new key %s", cred.APIKey.Fingerprint(), rot.NewFingerprint)
	}
}

// rotationEvents counts the stream's events by type once the rotation's
// last one (key.revoked) has been relayed, or after half a minute.
func rotationEvents(ctx context.Context, js jetstream.JetStream, stream string) map[string]int {
	var others map[string]int
	_ = waitFor(ctx, 30*time.Second, func() (bool, error) {
		_, o, err := readStream(ctx, js, stream)
		if err != nil {
			return false, nil
		}
		others = o
		return o[events.TypeKeyRevoked] > 0, nil
	})
	return others
}

// printRotationReport writes the rotation scenario's figures and verdict.
func printRotationReport(w io.Writer, r *rotationReport) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("## rotation crash run")
	p("")
	p("One HealthSync API-key rotation, 1 scheduler, 2 workers, rotation_hold %s; the worker making the vendor call of each step below SIGKILLed before the answer (the vendor completes the call).", r.Hold)
	p("")
	p("| SIGKILL during | worker | carried on by another worker after |")
	p("|---|---|---|")
	for i, k := range r.Kills {
		d := "-"
		if i < len(r.Resumed) {
			d = r.Resumed[i].Round(time.Millisecond).String()
		}
		p("| %s | %s#%d | %s |", r.KillSteps[i], k.Slot, k.Instance, d)
	}
	p("")
	p("rotation done %s after the last kill; stream: %d key.rotated, %d key.revoked", r.Finished.Round(time.Millisecond), r.Rotations, r.Revocations)
	if len(r.Violations) == 0 {
		p("verdict: PASS (logs in %s)", r.Dir)
		return
	}
	p("verdict: FAIL (logs in %s):", r.Dir)
	for _, v := range r.Violations {
		p("- %s", v)
	}
}
