package main

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenrelay/tokenrelay/events"
)

// published is one event the relay got a PubAck for.
type published struct {
	env events.Envelope
	lag time.Duration // PubAck time minus the outbox entry's time
	at  time.Time     // when OnPublished was called
	// flushed, when set, marks a flush request instead of an event.
	flushed chan struct{}
}

// collector receives the relay's OnPublished calls. The callback only
// queues the event (it runs on the relay's goroutine and must be quick);
// one goroutine decodes and counts them.
type collector struct {
	ch      chan published
	dropped atomic.Int64

	mu       sync.Mutex
	byType   map[string]int
	gen1     int       // token.renewed events of generation 1 (first tokens)
	gen1Last time.Time // when the last of them was acked
	// Per credential, the expiry of its latest token: a renewal whose new
	// token was requested after it left the credential without a valid
	// token for a while.
	lastExpiry map[string]time.Time
	gaps       int // renewals requested after the previous token expired
	// The measurement window, by ack time.
	winStart, winEnd time.Time
	winRenewed       int
	winLags          []time.Duration
	winSlack         []time.Duration // previous expiry minus new token's request time
	winEvents        map[string]int
	perSecond        map[int64]int // renewals by ack second (unix), window only
}

func newCollector() *collector {
	c := &collector{
		ch:         make(chan published, 1<<17),
		byType:     make(map[string]int),
		lastExpiry: make(map[string]time.Time),
		winEvents:  make(map[string]int),
		perSecond:  make(map[int64]int),
	}
	go c.loop()
	return c
}

// onPublished is the relay's OnPublished.
func (c *collector) onPublished(env events.Envelope, lag time.Duration) {
	select {
	case c.ch <- published{env: env, lag: lag, at: time.Now()}:
	default:
		c.dropped.Add(1)
	}
}

func (c *collector) loop() {
	for p := range c.ch {
		if p.flushed != nil {
			close(p.flushed)
			continue
		}
		c.record(p)
	}
}

// flush returns once every event queued before it is counted.
func (c *collector) flush() {
	done := make(chan struct{})
	c.ch <- published{flushed: done}
	<-done
}

func (c *collector) record(p published) {
	var data events.TokenRenewed
	renewed := p.env.Type == events.TypeTokenRenewed
	if renewed && json.Unmarshal(p.env.Data, &data) != nil {
		renewed = false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byType[p.env.Type]++
	inWindow := !c.winStart.IsZero() && !p.at.Before(c.winStart) && (c.winEnd.IsZero() || p.at.Before(c.winEnd))
	if inWindow {
		c.winEvents[p.env.Type]++
		c.winLags = append(c.winLags, p.lag)
	}
	if !renewed {
		return
	}
	if data.Generation == 1 {
		c.gen1++
		c.gen1Last = p.at
	}
	prev, seen := c.lastExpiry[data.Credential]
	if seen {
		slack := prev.Sub(data.IssuedAt)
		if slack <= 0 {
			c.gaps++
		}
		if inWindow {
			c.winSlack = append(c.winSlack, slack)
		}
	}
	c.lastExpiry[data.Credential] = data.ExpiresAt
	if inWindow {
		c.winRenewed++
		c.perSecond[p.at.Unix()]++
	}
}

func (c *collector) startWindow(at time.Time) {
	c.mu.Lock()
	c.winStart = at
	c.mu.Unlock()
}

func (c *collector) endWindow(at time.Time) {
	c.mu.Lock()
	c.winEnd = at
	c.mu.Unlock()
}

func (c *collector) firstTokens() (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen1, c.gen1Last
}

// snapshot is what the collector counted.
type snapshot struct {
	ByType, WinEvents map[string]int
	Gen1              int
	Gaps              int
	WinRenewed        int
	WinLags           []time.Duration
	WinSlack          []time.Duration
	PerSecond         map[int64]int
	Dropped           int64
}

func (c *collector) snapshot() snapshot {
	c.flush()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := snapshot{
		ByType: make(map[string]int), WinEvents: make(map[string]int), PerSecond: make(map[int64]int),
		Gen1: c.gen1, Gaps: c.gaps, WinRenewed: c.winRenewed,
		WinLags: append([]time.Duration(nil), c.winLags...), WinSlack: append([]time.Duration(nil), c.winSlack...),
		Dropped: c.dropped.Load(),
	}
	for k, v := range c.byType {
		s.ByType[k] = v
	}
	for k, v := range c.winEvents {
		s.WinEvents[k] = v
	}
	for k, v := range c.perSecond {
		s.PerSecond[k] = v
	}
	return s
}
