package webhooks

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// state is what every worker shares about webhooks, in Redis under
// prefix + "webhooks:":
//
//	seen:<vendor>:<delivery hash>   "1", for the dedup window: relayed already
//	live:<vendor>                   unix ms of the last delivery or heartbeat
//	events:<vendor>:<sub hash>      highest eventsSinceSubscriptionStart seen
//	mode:<vendor>:<resource>        "polling|<unix ms>" or "webhooks|<unix ms>"
//	fetches:<vendor>                sorted set: one member per fetch a
//	                                notification triggered, scored by its
//	                                unix ms, for one fetch_rate window
//
// No key or value holds a webhook body, a header or a resource id: ids and
// subscriptions are hashed, the rest are numbers and modes.
type state struct {
	rdb    redis.UniversalClient
	prefix string

	// liveMu guards liveWritten: liveness is written at most once a second
	// per vendor by one process, so that a burst costs one write.
	liveMu      sync.Mutex
	liveWritten map[string]time.Time
}

func newState(rdb redis.UniversalClient, prefix string) *state {
	return &state{rdb: rdb, prefix: prefix + "webhooks:", liveWritten: map[string]time.Time{}}
}

// hashID shortens an id of any length (a body hash, a vendor's id) to a
// fixed-size key part.
func hashID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (s *state) seenKey(vendor, delivery string) string {
	return s.prefix + "seen:" + vendor + ":" + hashID(delivery)
}

func (s *state) liveKey(vendor string) string { return s.prefix + "live:" + vendor }

func (s *state) fetchesKey(vendor string) string { return s.prefix + "fetches:" + vendor }

// markSeen records relayed deliveries for their windows, and their
// vendors' liveness, in one round trip.
func (s *state) markSeen(ctx context.Context, rs ...markRequest) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range rs {
			p.Set(ctx, s.seenKey(r.vendor, r.delivery), "1", r.window)
			if s.liveDue(r.vendor, r.now) {
				p.Set(ctx, s.liveKey(r.vendor), r.now.UnixMilli(), 0)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhooks: mark delivery: %w", err)
	}
	return nil
}

// liveDue says whether this process should write vendor's liveness now.
func (s *state) liveDue(vendor string, now time.Time) bool {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	last, ok := s.liveWritten[vendor]
	if ok && now.Sub(last) < time.Second && now.Sub(last) >= 0 {
		return false
	}
	s.liveWritten[vendor] = now
	return true
}

// touch records that vendor is alive (a heartbeat, a handshake).
func (s *state) touch(ctx context.Context, vendor string, now time.Time) error {
	if !s.liveDue(vendor, now) {
		return nil
	}
	if err := s.rdb.Set(ctx, s.liveKey(vendor), now.UnixMilli(), 0).Err(); err != nil {
		return fmt.Errorf("webhooks: record liveness: %w", err)
	}
	return nil
}

// lastLive is the vendor's last delivery or heartbeat; zero when none.
func (s *state) lastLive(ctx context.Context, vendor string) (time.Time, error) {
	ms, err := s.rdb.Get(ctx, s.liveKey(vendor)).Int64()
	switch {
	case errors.Is(err, redis.Nil):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("webhooks: read liveness: %w", err)
	}
	return time.UnixMilli(ms), nil
}

// startLive sets the vendor's liveness to now if it has none, so that a
// vendor never heard from counts as silent from the first look on.
func (s *state) startLive(ctx context.Context, vendor string, now time.Time) error {
	if err := s.rdb.SetNX(ctx, s.liveKey(vendor), now.UnixMilli(), 0).Err(); err != nil {
		return fmt.Errorf("webhooks: start liveness: %w", err)
	}
	return nil
}

func (s *state) eventsKey(vendor, subscription string) string {
	return s.prefix + "events:" + vendor + ":" + hashID(subscription)
}

// lastEvent is the highest event number seen of a subscription, or -1
// when none was.
func (s *state) lastEvent(ctx context.Context, vendor, subscription string) (int64, error) {
	n, err := s.rdb.Get(ctx, s.eventsKey(vendor, subscription)).Int64()
	switch {
	case errors.Is(err, redis.Nil):
		return -1, nil
	case err != nil:
		return 0, fmt.Errorf("webhooks: read event number: %w", err)
	}
	return n, nil
}

// raiseEvent sets a subscription's highest event number to n if n is
// higher (a handshake sets it whatever it was: a new subscription starts).
var raiseEvent = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == '1' or not cur or tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1`)

func (s *state) setEvent(ctx context.Context, vendor, subscription string, n int64, window time.Duration, reset bool) error {
	r := "0"
	if reset {
		r = "1"
	}
	err := raiseEvent.Run(ctx, s.rdb, []string{s.eventsKey(vendor, subscription)},
		n, window.Milliseconds(), r).Err()
	if err != nil {
		return fmt.Errorf("webhooks: record event number: %w", err)
	}
	return nil
}

// Modes of a vendor resource.
const (
	modeWebhooks = "webhooks"
	modePolling  = "polling"
)

func (s *state) modeKey(vendor, resource string) string {
	return s.prefix + "mode:" + vendor + ":" + resource
}

// mode is a resource's current mode and since when; webhooks since the
// zero time when none was recorded.
func (s *state) mode(ctx context.Context, vendor, resource string) (string, string, error) {
	raw, err := s.rdb.Get(ctx, s.modeKey(vendor, resource)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return modeWebhooks, "", nil
	case err != nil:
		return "", "", fmt.Errorf("webhooks: read mode: %w", err)
	}
	m, _, _ := strings.Cut(raw, "|")
	return m, raw, nil
}

// setMode changes the mode if it is still prev (another worker may have
// changed it meanwhile); it reports whether it did.
var setModeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`)

func (s *state) setMode(ctx context.Context, vendor, resource, prevRaw, mode string, now time.Time) (bool, error) {
	n, err := setModeScript.Run(ctx, s.rdb, []string{s.modeKey(vendor, resource)},
		prevRaw, mode+"|"+strconv.FormatInt(now.UnixMilli(), 10)).Int()
	if err != nil {
		return false, fmt.Errorf("webhooks: set mode: %w", err)
	}
	return n == 1, nil
}

// takeFetchesScript takes ARGV[4] fetches from a vendor's fetch rate
// (ARGV[3] in any window of ARGV[2] ms, now ARGV[1] ms), all or none. It
// returns -1 when they were taken, else the ms until they could be.
var takeFetchesScript = redis.NewScript(`
local now, per, limit, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
local used = redis.call('ZCARD', KEYS[1])
if used + n > limit then
  local i = used + n - limit - 1
  local oldest = redis.call('ZRANGE', KEYS[1], i, i, 'WITHSCORES')
  if oldest[2] == nil then return per end
  return math.max(1, tonumber(oldest[2]) + per - now)
end
for i = 1, n do
  redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], per)
return -1`)

// takeFetches takes n fetches from vendor's fetch rate (limit in any
// window of per), shared by every worker: all of them, or none and how
// long until they could be taken.
func (s *state) takeFetches(ctx context.Context, vendor string, n, limit int, per time.Duration, now time.Time) (wait time.Duration, err error) {
	if n <= 0 {
		return 0, nil
	}
	ms, err := takeFetchesScript.Run(ctx, s.rdb, []string{s.fetchesKey(vendor)},
		now.UnixMilli(), per.Milliseconds(), limit, n, rand.Text()).Int64()
	if err != nil {
		return 0, fmt.Errorf("webhooks: take from the fetch rate: %w", err)
	}
	if ms < 0 {
		return 0, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// markRequest is one relayed delivery to remember.
type markRequest struct {
	vendor, delivery string
	window           time.Duration
	now              time.Time
}

// marker remembers relayed deliveries in the background, many per Redis
// round trip, so that a delivery is acknowledged as soon as its PubAck
// arrives. A redelivery that races its mark is still dropped: it carries
// the same Nats-Msg-Id, within JetStream's duplicate window.
type marker struct {
	st  *state
	log func(err error)

	mu     sync.RWMutex
	closed bool
	ch     chan markRequest
	wg     sync.WaitGroup
}

// markBatch bounds the marks written in one round trip.
const markBatch = 256

func newMarker(st *state, log func(error)) *marker {
	m := &marker{st: st, log: log, ch: make(chan markRequest, 4096)}
	for range 2 {
		m.wg.Go(m.run)
	}
	return m
}

func (m *marker) run() {
	batch := make([]markRequest, 0, markBatch)
	for first := range m.ch {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < markBatch {
			select {
			case r, ok := <-m.ch:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if err := m.st.markSeen(context.Background(), batch...); err != nil {
			m.log(err)
		}
	}
}

// mark remembers a delivery: in the background, or at once when the
// queue is full or the marker is closed.
func (m *marker) mark(ctx context.Context, r markRequest) error {
	m.mu.RLock()
	if !m.closed {
		select {
		case m.ch <- r:
			m.mu.RUnlock()
			return nil
		default:
		}
	}
	m.mu.RUnlock()
	return m.st.markSeen(ctx, r)
}

// close writes what is queued and stops.
func (m *marker) close() {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.ch)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// seenCheck asks whether one delivery was relayed already.
type seenCheck struct {
	key   string
	reply chan seenAnswer
}

type seenAnswer struct {
	seen bool
	err  error
}

// checker looks deliveries up many per Redis round trip: concurrent
// deliveries share one pipeline (as NATS requests share one connection),
// and none waits for a batch to fill.
type checker struct {
	st *state
	ch chan seenCheck
	wg sync.WaitGroup

	mu     sync.RWMutex
	closed bool
}

func newChecker(st *state) *checker {
	c := &checker{st: st, ch: make(chan seenCheck, 1024)}
	for range 4 {
		c.wg.Go(c.run)
	}
	return c
}

func (c *checker) run() {
	batch := make([]seenCheck, 0, markBatch)
	for first := range c.ch {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < markBatch {
			select {
			case r, ok := <-c.ch:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cmds := make([]*redis.IntCmd, len(batch))
		_, err := c.st.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range batch {
				cmds[i] = p.Exists(ctx, r.key)
			}
			return nil
		})
		cancel()
		for i, r := range batch {
			if err != nil {
				r.reply <- seenAnswer{err: fmt.Errorf("webhooks: check delivery: %w", err)}
				continue
			}
			r.reply <- seenAnswer{seen: cmds[i].Val() > 0}
		}
	}
}

// seen reports whether a delivery was relayed already.
func (c *checker) seen(ctx context.Context, vendor, delivery string) (bool, error) {
	key := c.st.seenKey(vendor, delivery)
	reply := make(chan seenAnswer, 1)
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		n, err := c.st.rdb.Exists(ctx, key).Result()
		if err != nil {
			return false, fmt.Errorf("webhooks: check delivery: %w", err)
		}
		return n > 0, nil
	}
	select {
	case c.ch <- seenCheck{key: key, reply: reply}:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return false, ctx.Err()
	}
	select {
	case a := <-reply:
		return a.seen, a.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (c *checker) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.ch)
	}
	c.mu.Unlock()
	c.wg.Wait()
}
