package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
)

// stageTimes records how long the receiver's calls to Redis and JetStream
// took, to tell where a request's time goes (printed by the server at exit).
type stageTimes struct {
	mu    sync.Mutex
	times map[string][]time.Duration
}

func newStageTimes() *stageTimes { return &stageTimes{times: map[string][]time.Duration{}} }

func (s *stageTimes) add(stage string, d time.Duration) {
	s.mu.Lock()
	s.times[stage] = append(s.times[stage], d)
	s.mu.Unlock()
}

func (s *stageTimes) print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, stage := range []string{"jetstream publish", "redis pipeline", "redis command"} {
		t := s.times[stage]
		if len(t) == 0 {
			continue
		}
		slices.Sort(t)
		q := func(p float64) time.Duration { return t[min(len(t)-1, int(p*float64(len(t))))] }
		fmt.Fprintf(w, "server stage %-18s n=%-7d p50 %s  p90 %s  p99 %s  max %s\n", stage, len(t), ms(q(.5)), ms(q(.9)), ms(q(.99)), ms(q(1)))
	}
}

// timedPublisher times each publish.
type timedPublisher struct {
	js jetstream.JetStream
	st *stageTimes
}

var _ events.Publisher = timedPublisher{}

func (p timedPublisher) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	t0 := time.Now()
	ack, err := p.js.PublishMsg(ctx, msg, opts...)
	p.st.add("jetstream publish", time.Since(t0))
	return ack, err
}

// redisTimer is a go-redis hook timing commands and pipelines.
type redisTimer struct{ st *stageTimes }

func (h redisTimer) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h redisTimer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		t0 := time.Now()
		err := next(ctx, cmd)
		h.st.add("redis command", time.Since(t0))
		return err
	}
}

func (h redisTimer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		t0 := time.Now()
		err := next(ctx, cmds)
		h.st.add("redis pipeline", time.Since(t0))
		return err
	}
}
