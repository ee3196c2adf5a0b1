// Package testenv gives integration tests their own slice of the real Redis
// (127.0.0.1:6379, or TESTENV_REDIS_ADDR) and NATS (127.0.0.1:4222, or
// TESTENV_NATS_URL) every development and CI machine runs: a Redis database
// of their own (asynq has no key prefix, so tests that run asynq need a whole
// DB), a unique key prefix, a unique JetStream stream name, all cleaned up
// when the test ends. It fails the test (never skips) when a server is down:
// .ci/run starts them.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// dbCount is how many Redis databases the tests share out (1..15; 0 is left
// to the lock keys and to people).
const dbCount = 16

// RedisAddr is the address of the shared test Redis.
func RedisAddr() string {
	if a := os.Getenv("TESTENV_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// NATSURL is the URL of the shared test NATS server.
func NATSURL() string {
	if u := os.Getenv("TESTENV_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// Unique returns a short random name with the given prefix, safe for keys,
// stream names and subjects.
func Unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// RedisDB leases a whole Redis database for the test, flushes it before and
// after, and returns its number and a client on it. The lease is a key in DB
// 0 that expires by itself if the test process dies.
func RedisDB(t testing.TB) (int, *redis.Client) {
	t.Helper()
	ctx := context.Background()
	lock := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	t.Cleanup(func() { _ = lock.Close() })
	if err := lock.Ping(ctx).Err(); err != nil {
		t.Fatalf("testenv: real Redis at %s is not reachable (start it as .ci/run does): %v", RedisAddr(), err)
	}
	owner := Unique("lease-")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for db := 1; db < dbCount; db++ {
			key := fmt.Sprintf("testenv:db:%d", db)
			ok, err := lock.SetNX(ctx, key, owner, 15*time.Minute).Result()
			if err != nil {
				t.Fatalf("testenv: lease redis db: %v", err)
			}
			if !ok {
				continue
			}
			c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Fatalf("testenv: flush db %d: %v", db, err)
			}
			t.Cleanup(func() {
				_ = c.FlushDB(context.Background()).Err()
				_ = c.Close()
				if lock.Get(context.Background(), key).Val() == owner {
					lock.Del(context.Background(), key)
				}
			})
			return db, c
		}
		if time.Now().After(deadline) {
			t.Fatal("testenv: no free Redis database in 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RedisURL leases a database as RedisDB does and returns its URL.
func RedisURL(t testing.TB) string {
	t.Helper()
	db, _ := RedisDB(t)
	return fmt.Sprintf("redis://%s/%d", RedisAddr(), db)
}

// RedisPrefix returns a client on the shared Redis DB 0 and a unique key
// prefix ("t-xxxx:") whose keys are deleted when the test ends. Use it for
// code that takes a prefix; use RedisDB for asynq.
func RedisPrefix(t testing.TB) (*redis.Client, string) {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("testenv: real Redis at %s is not reachable (start it as .ci/run does): %v", RedisAddr(), err)
	}
	prefix := Unique("t-") + ":"
	t.Cleanup(func() {
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		_ = c.Close()
	})
	return c, prefix
}

// NATS connects to the shared NATS server and returns the connection, a
// JetStream handle and a unique stream name; the stream, if the test creates
// it, is deleted when the test ends.
func NATS(t testing.TB) (*nats.Conn, jetstream.JetStream, string) {
	t.Helper()
	nc, err := nats.Connect(NATSURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("testenv: real NATS at %s is not reachable (start it as .ci/run does): %v", NATSURL(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: jetstream: %v", err)
	}
	stream := strings.ToUpper(Unique("T_"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
		nc.Close()
	})
	return nc, js, stream
}
