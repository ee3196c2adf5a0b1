package events_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// A writer appends an event to the Redis outbox; the relay (one active per
// deployment, in the scheduler) moves it to the event stream, where a
// subscriber reads it. In-process NATS and Redis servers stand in for real
// ones so that the example runs anywhere.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	natsURL, redisAddr, stopServers := exampleServers()
	defer stopServers()

	// Callers own the connection; never giving up reconnecting lets the
	// relay wait out a NATS outage.
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()

	// Every process may ensure the stream at start-up.
	stream, err := events.EnsureStream(ctx, js, events.StreamConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Write an event to the outbox.
	env, err := events.New(events.TypeTokenRenewed, "halaxy-au", "clinic-42", time.Now(), events.TokenRenewed{
		Vendor: "halaxy-au", Credential: "clinic-42", Generation: 3, Fingerprint: "sha256:9f2c",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	outbox := events.NewOutbox(rdb, events.DefaultPrefix)
	if err := outbox.Append(ctx, env); err != nil {
		fmt.Println(err)
		return
	}

	// Relay the outbox to JetStream.
	relay, err := events.NewRelay(events.RelayOptions{Redis: rdb, Prefix: events.DefaultPrefix, JetStream: js})
	if err != nil {
		fmt.Println(err)
		return
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() { stopRelay(); <-relayDone }()

	// A subscriber sees it, with the event id as Nats-Msg-Id.
	consumer, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"token.renewed.>"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := consumer.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(msg.Subject())
	fmt.Println(msg.Headers().Get(jetstream.MsgIDHeader) == env.ID)
	// Output:
	// token.renewed.halaxy-au.clinic-42
	// true
}

// exampleServers starts an in-process NATS server with JetStream and an
// in-process Redis.
func exampleServers() (natsURL, redisAddr string, stop func()) {
	dir, err := os.MkdirTemp("", "events-example-")
	if err != nil {
		panic(err)
	}
	ns, err := testenv.RunNATS(-1, dir)
	if err != nil {
		panic(err)
	}
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	return ns.ClientURL(), mr.Addr(), func() {
		mr.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
}
