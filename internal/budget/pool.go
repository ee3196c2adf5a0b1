package budget

// The process-local side of the budget: each account's pool (the block of
// permits this process leased and hands out without Redis), the give-back
// of what it did not use, and the local copy of the pauses every process
// announces.

import (
	"context"
	"errors"
	"sync"
	"time"
)

// pool is a process's current lease of one account.
type pool struct {
	mu       sync.Mutex
	member   string    // the lease's record member ("" none)
	left     int       // permits not yet handed out
	deadline time.Time // local: hand out only before
	reset    int64     // fixed window: the lease's window end (ms)
	block    int       // next lease's size
	// start is when the lease began, dur its length, lastUse when its
	// last permit was handed out (all local).
	start, lastUse time.Time
	dur            time.Duration
	full           bool // the last lease was used up in time
	timer          *time.Timer
	lim            Limit
	// What the last Redis call said (server time for reset), so that
	// Observe can skip Redis when a response says nothing new.
	known                 bool
	knownLimit, knownUsed int
	knownReset            int64
}

// unused is how many leased permits p may still hand out at local.
func (p *pool) unused(local time.Time) int {
	if p.member == "" || !local.Before(p.deadline) {
		return 0
	}
	return p.left
}

// takeBack ends p's lease, returning what to give back.
func (p *pool) takeBack() release {
	r := release{member: p.member, unused: p.left, reset: p.reset,
		rescore: max(0, p.dur-p.lastUse.Sub(p.start))}
	p.member, p.left = "", 0
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	return r
}

// scheduleGiveBack gives back what is left of member's lease when it ends,
// so that an idle process does not keep others waiting for permits it
// will not use.
func (b *Budget) scheduleGiveBack(account string, p *pool, member string, after time.Duration) {
	p.timer = time.AfterFunc(after, func() {
		p.mu.Lock()
		if p.member != member || p.left == 0 {
			// Used up: the next lease re-records it.
			p.mu.Unlock()
			return
		}
		lim := p.lim
		back := p.takeBack()
		p.block = max(1, p.block/2)
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = b.runTake(ctx, account, lim, b.now(), 0, Bulk, 0, "", back)
	})
}

// giveBackAll ends every local lease, giving back its unused permits.
func (b *Budget) giveBackAll(ctx context.Context) error {
	b.mu.Lock()
	pools := make(map[string]*pool, len(b.pools))
	for a, p := range b.pools {
		pools[a] = p
	}
	b.mu.Unlock()
	var errs []error
	for account, p := range pools {
		p.mu.Lock()
		lim := p.lim
		back := p.takeBack()
		p.mu.Unlock()
		if back.member == "" || lim.unlimited() {
			continue
		}
		if _, err := b.runTake(ctx, account, lim, b.now(), 0, Bulk, 0, "", back); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// listenForPauses subscribes to the pauses other processes announce.
func (b *Budget) listenForPauses() {
	b.listening.Do(func() {
		b.mu.Lock()
		b.sub = b.rdb.Subscribe(context.Background(), b.pauseChannel())
		b.mu.Unlock()
		go b.listen()
	})
}

// listen applies the pauses other processes announce:
// "account\x00end\x00now", the pause's end and the time it was announced
// (ms, on the budget's clock: Redis's, or the injected one).
func (b *Budget) listen() {
	defer close(b.done)
	for msg := range b.sub.Channel() {
		account, end, at, ok := decodePause(msg.Payload)
		if !ok {
			continue
		}
		if b.o.Clock != nil {
			b.pauseLocally(account, time.UnixMilli(end).In(b.o.Clock().Location()))
			continue
		}
		b.pauseLocally(account, toLocal(end, at, time.Now()))
	}
}

// pauseLocally stops the local lease of account until until.
func (b *Budget) pauseLocally(account string, until time.Time) {
	b.mu.Lock()
	if until.After(b.paused[account]) {
		b.paused[account] = until
	}
	b.mu.Unlock()
}

func (b *Budget) localPause(account string, now time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.paused[account]
	if !ok {
		return time.Time{}, false
	}
	if !now.Before(until) {
		delete(b.paused, account)
		return time.Time{}, false
	}
	return until, true
}

// saysNothingNew tells whether a response's headers match what the last
// Redis call of p's account said: the same limit, no less remaining than
// the budget counts, the same fixed window.
func saysNothingNew(p *pool, hl, hr int, resetMs int64, unused int) bool {
	if hl >= 0 && hl != p.knownLimit {
		return false
	}
	if hr >= 0 && hr < p.knownLimit-p.knownUsed+unused {
		return false
	}
	if resetMs >= 0 && p.lim.Kind == Fixed && resetMs != p.knownReset {
		return false
	}
	return true
}
