package requests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// A request task carries a group of released requests: the feeder puts
// up to FeederOptions.GroupSize requests of one account, released together
// (round robin across its batches, within the budget's room), into one
// asynq task of type jobs.TypeVendorRequest on the default queue, so that
// asynq's enqueue, dequeue and done are paid once per group, not per
// request. The handler starts the group's requests in one step (start.lua
// over all of them), reads each credential's token once, reads the pause
// of an account without a limit of ours once, takes each request's permit
// just before its send (the budget hands them out from its local lease),
// tells the feeder in one step that the group is past its takes, sends
// the requests side by side, and writes the outcomes of those that end
// within a few milliseconds of each other in one transition.lua call
// (commit).
//
// What must wait leaves the group on its own, and the rest go on: a
// request the budget has no permit for goes back to the feeder's queue
// (requeue.lua); one that waits for a 429's pause, a token's refresh or
// a duplicate in flight, or backs off after a 5xx, is handed to a task of
// its own due then (its release number moves on in the same step, so a
// re-run of the group's task leaves it alone). A worker that dies
// mid-group: asynq runs the group's task again, and start skips the
// requests that have ended or moved on (those in flight are sent again,
// as a single request's task would be).

// groupPayload is the payload of a task carrying a group.
type groupPayload struct {
	Requests []groupEntry `json:"requests"`
}

// groupEntry is one released request of a group: the feeder's release
// number and the queued request's entry as released (entry.go: bytes, in
// JSON as base64), kept as it is so that a request handed to a task of its
// own carries the same payload.
type groupEntry struct {
	Release string `json:"release"`
	Entry   []byte `json:"entry"`
}

// encodeGroup returns the payload of a task carrying entries.
func encodeGroup(entries []groupEntry) ([]byte, error) {
	b, err := json.Marshal(groupPayload{Requests: entries})
	if err != nil {
		return nil, fmt.Errorf("requests: encode group: %w", err)
	}
	return b, nil
}

// decodeGroup reads a group's payload; ok is false for any other payload
// (a single request's). The payload encodeGroup writes is read without
// reflection (scanGroup); any other spelling of it goes through
// encoding/json, as every payload did before.
func decodeGroup(payload []byte) ([]groupEntry, bool) {
	if es, ok := scanGroup(payload); ok {
		return es, len(es) > 0
	}
	var g groupPayload
	if json.Unmarshal(payload, &g) != nil || len(g.Requests) == 0 {
		return nil, false
	}
	return g.Requests, true
}

// scanGroup reads a payload exactly as encodeGroup (json.Marshal) writes
// it: {"requests":[{"release":"…","entry":"…"},…]}, no spaces, a release
// of plain printable ASCII, an entry in standard base64, with what
// json.Unmarshal would read from it. ok is false for anything else
// (whitespace, escapes, other fields, null), which json.Unmarshal reads.
func scanGroup(p []byte) (entries []groupEntry, ok bool) {
	const head, rel, ent = `{"requests":[`, `{"release":"`, `","entry":"`
	if !bytes.HasPrefix(p, []byte(head)) {
		return nil, false
	}
	p = p[len(head):]
	if string(p) == "]}" {
		return nil, true
	}
	entries = make([]groupEntry, 0, bytes.Count(p, []byte(rel)))
	for {
		if !bytes.HasPrefix(p, []byte(rel)) {
			return nil, false
		}
		p = p[len(rel):]
		i := bytes.IndexByte(p, '"')
		if i < 0 {
			return nil, false
		}
		for _, c := range p[:i] {
			if c < 0x20 || c >= 0x7f || c == '\\' {
				return nil, false
			}
		}
		release := string(p[:i])
		p = p[i:]
		if !bytes.HasPrefix(p, []byte(ent)) {
			return nil, false
		}
		p = p[len(ent):]
		// base64 skips CR and LF, which JSON refuses raw in a string.
		if i = bytes.IndexByte(p, '"'); i < 0 || bytes.ContainsAny(p[:i], "\r\n") {
			return nil, false
		}
		entry := make([]byte, base64.StdEncoding.DecodedLen(i))
		n, err := base64.StdEncoding.Decode(entry, p[:i])
		if err != nil {
			return nil, false
		}
		entries = append(entries, groupEntry{Release: release, Entry: entry[:n]})
		p = p[i+1:]
		switch {
		case bytes.HasPrefix(p, []byte("},")):
			p = p[2:]
		case string(p) == "}]}":
			return entries, true
		default:
			return nil, false
		}
	}
}

// groupMember is one request of a group being run.
type groupMember struct {
	r     jobs.Request
	tc    tracing.Carrier
	entry groupEntry
}

// handleGroup runs a group's requests side by side (at most
// HandlerDeps.GroupConcurrency at once). It returns an error, for asynq to
// run the task again, only when a request could neither end nor leave the
// group (Redis unavailable, say).
func (h *Handler) handleGroup(ctx context.Context, taskID string, entries []groupEntry) error {
	var errs []error
	ms := make([]groupMember, 0, len(entries))
	starts := make([]startOne, 0, len(entries))
	for _, e := range entries {
		r, tc, err := openRequest(h.d.Keyring, e.Entry)
		if err != nil {
			// Not runnable here: a task of its own fails it without
			// retries, kept (archived) where operators see failed tasks.
			h.d.Logger.Error().Err(err).Str("task", taskID).Msg("a request of a group does not open; handing it to a task of its own")
			errs = append(errs, h.enqueueOwn(ctx, unreadableID(e.Entry), e, time.Time{}, false))
			continue
		}
		ms = append(ms, groupMember{r: r, tc: tc, entry: e})
		starts = append(starts, startOne{r: r, release: e.Release})
	}
	if len(ms) == 0 {
		return errors.Join(errs...)
	}
	st, err := h.start(ctx, groupOwner(ms), starts)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	g := newGroup(h, ms)
	gctx := context.WithValue(ctx, groupKey{}, g)
	retried, _ := asynq.GetRetryCount(ctx)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var sem chan struct{}
	if n := h.groupConcurrency(ms[0].r.Vendor); n > 0 {
		sem = make(chan struct{}, n)
	}
	for i := range ms {
		m := &ms[i] // not a copy of the request on the heap per run
		if sem != nil {
			sem <- struct{}{}
		}
		wg.Add(1)
		h.runners.do(func() {
			defer wg.Done()
			if sem != nil {
				defer func() { <-sem }()
			}
			defer g.memberDone()
			mctx, span := traceRun(gctx, m.r, m.tc, retried)
			err := h.run(mctx, m.r, st[i], g)
			endRun(span, err)
			var wait *jobs.RetryAt
			var tr *jobs.Transient
			if err != nil && !errors.As(err, &wait) && !errors.As(err, &tr) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runners run the requests of a handler's groups on goroutines kept
// between groups: a new goroutine per request grew its stack again to the
// depth of a send and an outcome (runtime.newstack was ~5% of a request
// job's CPU), and the requests of the next group need the same depth.
type runners struct {
	work chan func()
}

// runnerIdle is how long a runner waits for work before it ends.
const runnerIdle = 10 * time.Second

func newRunners() *runners { return &runners{work: make(chan func())} }

// do runs f on an idle runner, or on a new one when none is idle.
func (p *runners) do(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

// loop runs f, then whatever is handed to it, until it has been idle for
// runnerIdle.
func (p *runners) loop(f func()) {
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // nothing of a finished request is kept while idle
		idle.Reset(runnerIdle)
		select {
		case f = <-p.work:
		case <-idle.C:
			return
		}
	}
}

// groupConcurrency is how many requests of a group of vendor's are sent
// at once (0: all).
func (h *Handler) groupConcurrency(vendor string) int {
	if h.d.GroupConcurrency > 0 {
		return h.d.GroupConcurrency
	}
	if lim := budget.LimitOf(h.d.Vendors[vendor]); lim.Requests > 0 && lim.Per > 0 {
		return DefaultLimitedConcurrency
	}
	return 0
}

// groupOwner names a group's run in start.lua: its first request's id and
// release, as its task id does (the same in every run of that task).
func groupOwner(ms []groupMember) string {
	return ms[0].r.ID + ":" + ms[0].entry.Release
}

// unreadableID names a group's entry that does not open, for its own task.
func unreadableID(entry []byte) string {
	if e, err := readEntry(entry); err == nil && requestIDRE.MatchString(e.ID) {
		return e.ID
	}
	sum := sha256.Sum256(entry)
	return "unreadable-" + hex.EncodeToString(sum[:8])
}

// group is what a group's requests share while they run. Its methods
// accept a nil *group: a request run by a task of its own.
type group struct {
	h        *Handler
	entries  map[string]groupEntry
	accounts map[string]string // request id -> budget account

	mu     sync.Mutex
	tokens map[string]store.Credential // credential -> token read for the group
	locks  map[string]*sync.Mutex      // credential -> one token read at a time
	pauses map[string]*pauseRead       // account -> its pause, read once (no limit of ours)
	// left counts the requests not yet past their budget take; taken are
	// those past it with a permit, by account (the feeder's pending).
	left   int
	passed map[string]bool
	taken  map[string][]string
	// running counts the requests still running; batch holds the
	// transitions of those that ended and wait to be written together;
	// full wakes the one that writes them when all running have ended.
	running int
	batch   []commitCall
	full    chan struct{}
}

// commitCall is one request's transition waiting to be written.
type commitCall struct {
	step step
	done chan error
}

// commitWindow is the longest a request's transition waits for the
// others of its group to end with it.
const commitWindow = 5 * time.Millisecond

// groupKey holds, in a request's context, the group it runs in.
type groupKey struct{}

// groupOf is the group the request whose run ctx belongs to runs in (nil:
// a task of its own).
func groupOf(ctx context.Context) *group {
	g, _ := ctx.Value(groupKey{}).(*group)
	return g
}

// commit writes a request's transition together with those of the other
// requests of the group that end within commitWindow of it (or once every
// running request of the group has ended): one round trip for them all.
// The first to arrive writes the lot; each gets the outcome.
func (g *group) commit(ctx context.Context, t step) error {
	c := commitCall{step: t, done: make(chan error, 1)}
	g.mu.Lock()
	g.batch = append(g.batch, c)
	lead := len(g.batch) == 1
	g.kickLocked()
	g.mu.Unlock()
	if lead {
		select {
		case <-g.full:
		case <-time.After(commitWindow):
		case <-ctx.Done():
		}
		g.mu.Lock()
		batch := g.batch
		g.batch = nil
		g.mu.Unlock()
		steps := make([]step, len(batch))
		for i, b := range batch {
			steps[i] = b.step
		}
		err := runTransitions(context.WithoutCancel(ctx), g.h.d.Redis, steps...)
		for _, b := range batch {
			b.done <- err
		}
	}
	return <-c.done
}

// memberDone records that a request of the group stopped running.
func (g *group) memberDone() {
	g.mu.Lock()
	g.running--
	g.kickLocked()
	g.mu.Unlock()
}

// kickLocked wakes the writer of the waiting transitions when every
// running request's is among them. g.mu is held.
func (g *group) kickLocked() {
	if len(g.batch) > 0 && len(g.batch) >= g.running {
		select {
		case g.full <- struct{}{}:
		default:
		}
	}
}

// pauseRead is the one read of an account's pause for a group.
type pauseRead struct {
	once sync.Once
	ok   bool
	at   time.Time
	err  error
}

func newGroup(h *Handler, ms []groupMember) *group {
	g := &group{h: h, entries: make(map[string]groupEntry, len(ms)), accounts: make(map[string]string, len(ms)),
		tokens: map[string]store.Credential{},
		locks:  map[string]*sync.Mutex{}, pauses: map[string]*pauseRead{},
		left: len(ms), passed: make(map[string]bool, len(ms)), taken: map[string][]string{},
		running: len(ms), full: make(chan struct{}, 1)}
	for _, m := range ms {
		g.entries[m.r.ID] = m.entry
		g.accounts[m.r.ID] = h.d.Account(m.r.Vendor, m.r.Credential)
	}
	return g
}

// token is h.token, read once per credential for the group while it
// stays usable for the request.
func (g *group) token(ctx context.Context, h *Handler, r jobs.Request, rec record) (store.Credential, error) {
	if g == nil {
		return h.token(ctx, r, rec)
	}
	g.mu.Lock()
	l := g.locks[r.Credential]
	if l == nil {
		l = &sync.Mutex{}
		g.locks[r.Credential] = l
	}
	g.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	g.mu.Lock()
	c, ok := g.tokens[r.Credential]
	g.mu.Unlock()
	if ok && h.usable(c, rec, h.d.Clock()) {
		return c, nil
	}
	c, err := h.token(ctx, r, rec)
	if err == nil {
		g.mu.Lock()
		g.tokens[r.Credential] = c
		g.mu.Unlock()
	}
	return c, err
}

// take asks the budget for one request's permit. In a group, a 429 met by
// another request this process sent (Handler.hold) refuses at once, and an
// account without a limit of ours (whose take only reads its pause) is
// read once for the group.
func (g *group) take(ctx context.Context, h *Handler, account string, lim budget.Limit) (bool, time.Time, error) {
	if g == nil {
		return h.d.Budget.Take(ctx, account, lim, budget.Bulk)
	}
	until := h.pausedUntil(account)
	g.mu.Lock()
	p := g.pauses[account]
	if p == nil {
		p = &pauseRead{}
		g.pauses[account] = p
	}
	g.mu.Unlock()
	if until.After(h.d.Clock()) {
		return false, until, nil
	}
	if lim.Requests > 0 && lim.Per > 0 {
		return h.d.Budget.Take(ctx, account, lim, budget.Bulk)
	}
	p.once.Do(func() { p.ok, p.at, p.err = h.d.Budget.Take(ctx, account, lim, budget.Bulk) })
	return p.ok, p.at, p.err
}

// pass records that request id is past its budget take (took: with a
// permit) or ended before it; only its first call counts. Once every
// request of the group is past, the feeder is told in one step (unpend).
func (g *group) pass(id string, took bool) {
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.passed[id] {
		g.mu.Unlock()
		return
	}
	g.passed[id] = true
	g.left--
	if took {
		a := g.accounts[id]
		g.taken[a] = append(g.taken[a], id)
	}
	last := g.left == 0
	g.mu.Unlock()
	if last {
		go g.unpend()
	}
}

// unpend tells the feeder that the requests that took a permit are past
// their take (the budget counts them now), so that it can release others
// in their stead. The others leave its pending set as they end or go
// back to its queue.
func (g *group) unpend() {
	g.mu.Lock()
	taken := g.taken
	g.taken = map[string][]string{}
	g.mu.Unlock()
	if len(taken) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p := g.h.d.Redis.Pipeline()
	for account, ids := range taken {
		p.ZRem(ctx, g.h.keys.pending(account), anys(ids)...)
	}
	_, _ = p.Exec(ctx) // the transitions say it again
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// handoff hands request r, which must wait until at (why: a *RetryAt or
// a *jobs.Transient), to a task of its own due then, and leaves it
// waiting. The task is enqueued first: a request is never left waiting
// with no task to run it.
func (g *group) handoff(ctx context.Context, h *Handler, r jobs.Request, rec record, at time.Time, why error) error {
	var tr *jobs.Transient
	if err := h.enqueueOwn(ctx, r.ID, g.entries[r.ID], at, errors.As(why, &tr)); err != nil {
		return err
	}
	return transition(ctx, h.d.Redis, h.d.Keyring, h.keys, h.outbox, g.accounts[r.ID], r, "waiting", nil,
		rec.attempts, h.d.Clock(), h.d.IdempotencyTTL, true)
}

// enqueueOwn enqueues a group's entry as a task of its own, due at (zero:
// now). A transient failure's task has one retry less: its first send was
// the group's.
func (h *Handler) enqueueOwn(ctx context.Context, id string, e groupEntry, at time.Time, transient bool) error {
	opts := []asynq.Option{asynq.TaskID(jobs.RequestTaskID(id) + ":" + e.Release + ":own")}
	if !at.IsZero() {
		opts = append(opts, asynq.ProcessAt(at))
	}
	if transient {
		opts = append(opts, asynq.MaxRetry(jobs.RequestMaxRetry-1))
	}
	_, err := h.d.Enqueuer.EnqueueContext(ctx, jobs.NewRequestTaskPayload(id, e.Entry), opts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("requests: hand %s to a task of its own: %w", id, err)
	}
	return nil
}
