package events

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/lease"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// Relay defaults.
const (
	DefaultRelayBatchSize  = 256
	DefaultRelayLeaseTTL   = 5 * time.Second
	DefaultRelayBlock      = time.Second
	DefaultRelayAckTimeout = 5 * time.Second
)

// Backoff between failed attempts: doubling from relayBackoffMin, capped.
const (
	relayBackoffMin = 100 * time.Millisecond
	relayBackoffMax = 2 * time.Second
)

// cleanupTimeout bounds the Redis calls a relay still makes after its
// context is done (deleting what was acked, releasing the lease).
const cleanupTimeout = 2 * time.Second

// errNATSNotConnected stops a batch while the connection is reconnecting:
// a message published then would sit in the client's reconnect buffer and
// could reach the stream after ones published later.
var errNATSNotConnected = errors.New("events: relay: NATS is not connected")

// errLeaseExpired stops a batch once the lease may have passed to another
// relay.
var errLeaseExpired = errors.New("events: relay: lease expired")

// RelayOptions configures a Relay. Redis and JetStream are required; every
// other field has a default.
type RelayOptions struct {
	// Redis holds the outbox.
	Redis redis.UniversalClient
	// Prefix is the Redis key prefix of the outbox. Default DefaultPrefix.
	Prefix string
	// JetStream reaches the event stream. The relay publishes on its
	// connection (JetStream.Conn()) through a publisher of its own, so that
	// its in-flight bound and ack timeout neither depend on nor disturb the
	// caller's. The caller owns the connection and should create it with
	// nats.MaxReconnects(-1): a connection that gives up reconnecting ends
	// Run with an error, while one that never gives up lets the relay wait
	// out any NATS outage.
	JetStream jetstream.JetStream
	// SubjectPrefix is put before every event subject; it must be the
	// stream's StreamConfig.SubjectPrefix. Default "".
	SubjectPrefix string
	// Logger receives lease changes, failures and dead-lettered entries
	// (never their content). Default: the zero Logger, which discards.
	Logger zerolog.Logger
	// BatchSize is how many entries are read, and published without waiting
	// for acks, at a time. Default 256.
	BatchSize int
	// LeaseTTL is how long the active relay's lease lives without renewal;
	// the holder renews it every LeaseTTL/3 and standbys try to take it every
	// LeaseTTL/5. Default 5s.
	LeaseTTL time.Duration
	// Block is how long one XREAD waits for new entries. Default 1s.
	Block time.Duration
	// AckTimeout is how long a publish waits for its PubAck before it counts
	// as failed (and is retried). Default 5s.
	AckTimeout time.Duration
	// OnPublished, if set, is called after an entry's PubAck (also when
	// JetStream reports it as a duplicate) with the event and its lag: the
	// ack time minus the time in the entry's Redis stream id. It runs on the
	// relay's goroutine, so it must be quick (a metric, a channel send).
	OnPublished func(env Envelope, lag time.Duration)
	// Keyring opens sealed entries (SealOutboxEntry) before they are
	// published. Nil: a sealed entry goes to the dead letter, still sealed.
	Keyring *seal.Keyring
}

// Relay moves events from the Redis outbox to JetStream, so that an event is
// never lost and never stored twice in the stream.
//
// Any number of relays (one per scheduler replica) may run on one outbox;
// one of them, the holder of a lease in Redis, is active and the others
// stand by. The active relay reads entries in order, publishes each with its
// event id as Nats-Msg-Id and deletes it from the outbox only after its
// PubAck. Entries are therefore delivered at least once, and JetStream drops
// a re-publish (after a crash between ack and delete, or a lease handover)
// as long as it comes within the stream's duplicate window.
//
// Order: one active relay publishing in outbox order keeps the events of a
// credential in the order they were written. A batch that fails part-way is
// retried from its first unacked entry; entries that were acked after it stay
// where they are in the stream, so a failure that drops a message in the
// middle of a batch (rather than everything from some point on, as a
// disconnect does) can put a retried event behind later ones.
type Relay struct {
	rdb           redis.UniversalClient
	outbox        *Outbox
	deadKey       string
	lease         *lease.Lease
	nc            *nats.Conn
	pub           jetstream.JetStream
	subjectPrefix string
	log           zerolog.Logger
	batch         int
	leaseTTL      time.Duration
	block         time.Duration
	ackTimeout    time.Duration
	onPublished   func(Envelope, time.Duration)
	keyring       *seal.Keyring

	running atomic.Bool
	active  atomic.Bool

	// published holds outbox ids acked by JetStream whose XDEL has not
	// succeeded yet: they are deleted, never published again. Used only by
	// the goroutine in Run.
	published map[string]struct{}
}

// NewRelay checks the options, fills in defaults and returns a relay ready
// to Run.
func NewRelay(o RelayOptions) (*Relay, error) {
	switch {
	case o.Redis == nil:
		return nil, errors.New("events: relay options: Redis is required")
	case o.JetStream == nil:
		return nil, errors.New("events: relay options: JetStream is required")
	case o.BatchSize < 0:
		return nil, fmt.Errorf("events: relay options: BatchSize is %d, want a positive number (or 0 for %d)", o.BatchSize, DefaultRelayBatchSize)
	case o.LeaseTTL < 0, o.LeaseTTL > 0 && o.LeaseTTL < 10*time.Millisecond:
		return nil, fmt.Errorf("events: relay options: LeaseTTL is %s, want at least 10ms (or 0 for %s)", o.LeaseTTL, DefaultRelayLeaseTTL)
	case o.Block < 0, o.AckTimeout < 0:
		return nil, errors.New("events: relay options: Block and AckTimeout must be positive (or 0 for their defaults)")
	}
	if err := validateSubjectPrefix(o.SubjectPrefix); err != nil {
		return nil, fmt.Errorf("events: relay options: %w", err)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultRelayBatchSize
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultRelayLeaseTTL
	}
	if o.Block == 0 {
		o.Block = DefaultRelayBlock
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultRelayAckTimeout
	}
	nc := o.JetStream.Conn()
	if nc == nil {
		return nil, errors.New("events: relay options: JetStream has no connection")
	}
	pub, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(o.BatchSize),
		jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("events: relay: jetstream publisher: %w", err)
	}
	host, _ := os.Hostname()
	r := &Relay{
		rdb:           o.Redis,
		outbox:        NewOutbox(o.Redis, o.Prefix),
		deadKey:       DeadLetterKey(o.Prefix),
		lease:         lease.New(o.Redis, RelayLeaseKey(o.Prefix), fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()), o.LeaseTTL),
		nc:            nc,
		pub:           pub,
		subjectPrefix: o.SubjectPrefix,
		log:           o.Logger.With().Str("component", "outbox-relay").Logger(),
		batch:         o.BatchSize,
		leaseTTL:      o.LeaseTTL,
		block:         o.Block,
		ackTimeout:    o.AckTimeout,
		onPublished:   o.OnPublished,
		published:     make(map[string]struct{}),
		keyring:       o.Keyring,
	}
	if !nc.Opts.AllowReconnect || nc.Opts.MaxReconnect >= 0 {
		r.log.Warn().Int("max_reconnects", nc.Opts.MaxReconnect).
			Msg("NATS connection gives up reconnecting; create it with nats.MaxReconnects(-1) so the relay outlives a NATS outage")
	}
	return r, nil
}

// Depth is the number of entries waiting in the outbox.
func (r *Relay) Depth(ctx context.Context) (int64, error) { return r.outbox.Depth(ctx) }

// Active reports whether this relay holds the lease and is publishing.
func (r *Relay) Active() bool { return r.active.Load() }

// Run relays until ctx is done, then releases the lease and returns nil. It
// returns an error only if Run is already running or the NATS connection is
// closed for good (wrapping nats.ErrConnectionClosed; see
// RelayOptions.JetStream). Redis and NATS failures are retried with backoff;
// the entries wait in the outbox meanwhile.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("events: relay: Run is already running")
	}
	defer r.running.Store(false)

	standby := time.NewTimer(0)
	defer standby.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-standby.C:
		}
		if r.nc.IsClosed() {
			return fmt.Errorf("events: relay: %w", nats.ErrConnectionClosed)
		}
		got, err := r.lease.Acquire(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.log.Warn().Err(err).Msg("cannot reach Redis to take the relay lease; retrying")
		}
		if got.Held() {
			if err := r.lead(ctx); err != nil {
				return err
			}
		}
		standby.Reset(r.leaseTTL / 5)
	}
}

// lead relays while this relay holds the lease.
func (r *Relay) lead(ctx context.Context) error {
	r.log.Info().Str("owner", r.lease.Owner()).Msg("relay lease taken: publishing the outbox")
	leaseCtx, lost := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.keepLease(leaseCtx, lost) })
	r.active.Store(true)

	err := r.pump(leaseCtx)

	r.active.Store(false)
	lost()
	wg.Wait()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if rerr := r.lease.Release(rctx); rerr != nil {
		r.log.Warn().Err(rerr).Msg("cannot release the relay lease; it expires by itself")
	}
	if ctx.Err() == nil && err == nil {
		r.log.Warn().Msg("relay lease lost: standing by")
	}
	return err
}

// keepLease renews the lease every LeaseTTL/3 and calls lost when it is gone:
// taken by another relay, or expired while Redis could not be reached.
func (r *Relay) keepLease(ctx context.Context, lost context.CancelFunc) {
	defer lost()
	err := r.lease.Keep(ctx, func(err error, until time.Time) {
		r.log.Warn().Err(err).Time("lease_until", until).Msg("cannot renew the relay lease; retrying")
	})
	switch {
	case errors.Is(err, lease.ErrExpired):
		r.log.Warn().Msg("relay lease expired before it could be renewed")
	case errors.Is(err, lease.ErrTaken):
		r.log.Warn().Msg("relay lease taken by another relay")
	}
}

// pump relays batches until ctx is done (shutdown or lease lost).
func (r *Relay) pump(ctx context.Context) error {
	cursor := "0-0"
	attempt := 0
	retry := func(err error, msg string) bool {
		attempt++
		wait := policy.Doubling(attempt, relayBackoffMin, relayBackoffMax)
		r.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", wait).Msg(msg)
		return sleepCtx(ctx, wait)
	}
	for ctx.Err() == nil && r.lease.Valid() {
		if r.nc.IsClosed() {
			return fmt.Errorf("events: relay: %w", nats.ErrConnectionClosed)
		}
		// After a Redis error, read from the oldest entry again: the error
		// may be a failover, and the new master may hold entries behind the
		// cursor whose deletion the old one acknowledged but never passed
		// on. Those are published again (JetStream drops the duplicate) and
		// deleted; left behind the cursor, they would never leave the outbox.
		if err := r.deletePublished(ctx); err != nil {
			cursor = "0-0"
			if ctx.Err() != nil || !retry(err, "cannot delete published entries from the outbox; retrying") {
				return nil
			}
			continue
		}
		msgs, err := r.read(ctx, cursor)
		if err != nil {
			cursor = "0-0"
			if ctx.Err() != nil || !retry(err, "cannot read the outbox; retrying") {
				return nil
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		if err := r.relayBatch(ctx, msgs); err != nil {
			// Everything not acked is still in the outbox: read again
			// from its oldest entry.
			cursor = "0-0"
			if ctx.Err() != nil || !retry(err, "cannot publish outbox entries; they wait in the outbox") {
				return nil
			}
			continue
		}
		attempt = 0
		cursor = msgs[len(msgs)-1].ID
	}
	return nil
}

// read returns up to a batch of entries after cursor, waiting up to Block
// for one to arrive.
func (r *Relay) read(ctx context.Context, cursor string) ([]redis.XMessage, error) {
	streams, err := r.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{r.outbox.Key(), cursor},
		Count:   int64(r.batch),
		Block:   r.block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("events: relay: read outbox: %w", err)
	}
	if len(streams) == 0 {
		return nil, nil
	}
	return streams[0].Messages, nil
}

// relayBatch publishes a batch, waits for the acks, deletes the acked entries
// and dead-letters the malformed ones. It returns an error if any entry is
// left in the outbox for a retry.
func (r *Relay) relayBatch(ctx context.Context, msgs []redis.XMessage) error {
	type inflight struct {
		entry
		msg  redis.XMessage
		fut  jetstream.PubAckFuture
		span trace.Span
	}
	var (
		sent    []inflight
		dead    []deadEntry
		failure error
	)
	for _, m := range msgs {
		if _, done := r.published[m.ID]; done {
			continue
		}
		e, reason := parseEntry(m, r.keyring)
		if reason != "" {
			dead = append(dead, deadEntry{m, reason})
			continue
		}
		if ctx.Err() != nil {
			failure = ctx.Err()
			break
		}
		if !r.lease.Valid() { // e.g. this process was paused past the lease
			failure = errLeaseExpired
			break
		}
		if !r.nc.IsConnected() {
			failure = errNATSNotConnected
			break
		}
		msg := newMsg(r.subjectPrefix+e.subject, e.id, e.event)
		span := tracePublish(ctx, msg, e.trace)
		fut, err := r.pub.PublishMsgAsync(msg, jetstream.WithStallWait(r.ackTimeout))
		if errors.Is(err, nats.ErrMaxPayload) {
			endSpan(span, err)
			dead = append(dead, deadEntry{m, "event is larger than the NATS server's max_payload"})
			continue
		}
		if err != nil {
			endSpan(span, err)
			failure = fmt.Errorf("events: relay: publish: %w", err)
			break
		}
		sent = append(sent, inflight{entry: e, msg: m, fut: fut, span: span})
	}

	type acked struct {
		entry
		at time.Time
	}
	var done []acked
wait:
	for _, s := range sent {
		select {
		case <-s.fut.Ok():
			endSpan(s.span, nil)
			done = append(done, acked{s.entry, time.Now()})
		case err := <-s.fut.Err():
			endSpan(s.span, err)
			if errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
				dead = append(dead, deadEntry{s.msg, "event is larger than the stream's maximum message size"})
				continue
			}
			if failure == nil {
				failure = fmt.Errorf("events: relay: publish: %w", err)
			}
		case <-ctx.Done():
			endSpan(s.span, ctx.Err())
			if failure == nil {
				failure = ctx.Err()
			}
			break wait
		}
	}

	for _, a := range done {
		r.published[a.rid] = struct{}{}
	}
	// Delete what was acked even if ctx is done (shutdown, lease lost):
	// each entry left behind is published again by the next active relay.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	if err := r.deletePublished(dctx); err != nil {
		r.log.Warn().Err(err).Int("entries", len(r.published)).Msg("cannot delete published entries from the outbox yet; they will not be published again")
	}
	cancel()
	if r.onPublished != nil {
		for _, a := range done {
			r.onPublished(a.envelope(), a.at.Sub(streamIDTime(a.rid)))
		}
	}
	if err := r.moveToDead(ctx, dead); err != nil && failure == nil {
		failure = err
	}
	return failure
}

// deletePublished deletes the acked entries from the outbox.
func (r *Relay) deletePublished(ctx context.Context) error {
	if len(r.published) == 0 {
		return nil
	}
	ids := make([]string, 0, len(r.published))
	for id := range r.published {
		ids = append(ids, id)
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for chunk := range slices.Chunk(ids, r.batch) {
			p.XDel(ctx, r.outbox.Key(), chunk...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("events: relay: delete published entries: %w", err)
	}
	clear(r.published)
	return nil
}

// streamIDTime is the time in a Redis stream id ("<unix ms>-<seq>").
func streamIDTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// sleepCtx waits d, or less if ctx is done first; it reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
