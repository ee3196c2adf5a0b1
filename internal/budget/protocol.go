package budget

// The budget's Redis protocol: the scripts take.lua and observe.lua, whose
// ARGV and replies are matched by position (a test checks each against the
// script's header), and the pause message processes announce on
// pauseChannel. The keys are named in keyspace.go.

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/take.lua
var takeLua string

//go:embed lua/observe.lua
var observeLua string

var (
	takeScript    = redis.NewScript(takeLua)
	observeScript = redis.NewScript(observeLua)
)

// takeArgs are take.lua's ARGV, in the order argv gives them.
type takeArgs struct {
	now     int64 // ms; 0: Redis TIME
	kind    string
	limit   int
	window  int64 // ms
	want    int
	reserve float64
	shift   int64 // ms
	id      string
	back    release
	guard   int64 // ms
}

// takeArgNames name take.lua's ARGV in order: each starts its line in the
// script's header.
var takeArgNames = []string{"now", "kind", "configured limit", "window", "want", "reserve", "shift", "lease id",
	"member to hand back", "unused count handed back", "reset of the handed-back lease", "guard",
	"ms to move the handed-back lease's time earlier"}

func (a takeArgs) argv() []any {
	return []any{a.now, a.kind, a.limit, a.window, a.want,
		strconv.FormatFloat(a.reserve, 'f', -1, 64), a.shift, a.id,
		a.back.member, a.back.unused, a.back.reset, a.guard, a.back.rescore.Milliseconds()}
}

// takeReplyNames name take.lua's reply in order, as its header does.
var takeReplyNames = []string{"granted", "now", "retry", "limit", "used", "paused", "reset"}

// decodeTake reads take.lua's reply.
func decodeTake(res []int64) (takeResult, error) {
	if len(res) != len(takeReplyNames) {
		return takeResult{}, fmt.Errorf("unexpected answer %v", res)
	}
	return takeResult{granted: int(res[0]), serverNow: res[1], retry: res[2], limit: int(res[3]), used: int(res[4]),
		paused: res[5], reset: res[6]}, nil
}

// observeArgs are observe.lua's ARGV, in the order argv gives them.
type observeArgs struct {
	now             int64 // ms; 0: Redis TIME
	kind            string
	limit           int
	window          int64 // ms
	headerLimit     int   // -1: absent
	headerRemaining int   // -1: absent
	reset           int64 // ms; -1: absent
	pause           int64 // ms; -1: no 429
	learnedTTL      int64 // ms
	id              string
	unused          int
}

// observeArgNames name observe.lua's ARGV in order: each starts its line
// in the script's header.
var observeArgNames = []string{"now", "kind", "configured limit", "window", "header limit", "header remaining",
	"header reset", "pause", "learned-limit TTL", "id for a phantom entry", "permits the observing process leased"}

func (a observeArgs) argv() []any {
	return []any{a.now, a.kind, a.limit, a.window, a.headerLimit, a.headerRemaining, a.reset, a.pause,
		a.learnedTTL, a.id, a.unused}
}

// observeResult is observe.lua's answer.
type observeResult struct {
	serverNow int64
	paused    int64
	limit     int
	used      int
}

// observeReplyNames name observe.lua's reply in order, as its header does.
var observeReplyNames = []string{"now", "paused", "limit", "used"}

// runObserve runs observe.lua for account (with the index write w).
func (b *Budget) runObserve(ctx context.Context, account string, w indexWrite, a observeArgs) (observeResult, error) {
	res, err := b.runScript(ctx, observeScript, account, w, a.argv()...)
	if err != nil {
		return observeResult{}, fmt.Errorf("budget: observe %s: %w", account, err)
	}
	if len(res) != len(observeReplyNames) {
		return observeResult{}, fmt.Errorf("budget: observe %s: unexpected answer %v", account, res)
	}
	return observeResult{serverNow: res[0], paused: res[1], limit: int(res[2]), used: int(res[3])}, nil
}

// encodePause is the message announcing account's pause until end (ms),
// announced at now (ms), both on the budget's clock (Redis's, or the
// injected one): "account\x00end\x00now".
func encodePause(account string, end, now int64) string {
	return account + "\x00" + strconv.FormatInt(end, 10) + "\x00" + strconv.FormatInt(now, 10)
}

// decodePause reads encodePause's message.
func decodePause(payload string) (account string, end, now int64, ok bool) {
	parts := strings.Split(payload, "\x00")
	if len(parts) != 3 {
		return "", 0, 0, false
	}
	end, err1 := strconv.ParseInt(parts[1], 10, 64)
	now, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, 0, false
	}
	return parts[0], end, now, true
}

// takeResult is take.lua's answer.
type takeResult struct {
	granted   int
	serverNow int64
	retry     int64
	limit     int
	used      int
	paused    int64
	reset     int64
}

// release ends a lease: its unused permits go back, and the rest are
// recorded rescore earlier (when the last was handed out, not the lease's
// end), so that a busy process's permits leave the window sooner.
type release struct {
	member  string
	unused  int
	reset   int64
	rescore time.Duration
}

func (b *Budget) runTake(ctx context.Context, account string, lim Limit, local time.Time, want int, class Class, shift time.Duration, id string, back release) (takeResult, error) {
	kind := "sliding"
	switch lim.Kind {
	case Sliding:
	case Fixed:
		kind = "fixed"
	default:
		return takeResult{}, ErrBadLimit
	}
	reserve := b.o.PriorityReserve
	if class == Priority || reserve < 0 {
		reserve = 0
	}
	// Asking for permits is using the account: it goes in the index
	// (reports and give-backs, want 0, do not).
	var w indexWrite
	if want > 0 {
		w = b.indexDue(account, local)
	}
	args := takeArgs{now: b.nowArg(local), kind: kind, limit: lim.Requests, window: lim.Per.Milliseconds(), want: want,
		reserve: reserve, shift: shift.Milliseconds(), id: id, back: back, guard: b.slack(lim).Milliseconds()}
	res, err := b.runScript(ctx, takeScript, account, w, args.argv()...)
	if err != nil {
		return takeResult{}, fmt.Errorf("budget: take %s: %w", account, err)
	}
	r, err := decodeTake(res)
	if err != nil {
		return takeResult{}, fmt.Errorf("budget: take %s: %w", account, err)
	}
	b.o.Metrics.set(account, r.limit, r.used, toLocal(r.paused, r.serverNow, local))
	return r, nil
}
