package testenv

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Miniredis starts an in-process Redis (miniredis) of the test's own and
// returns a client on it; both are closed when the test ends. It is for unit
// tests that need neither real Lua nor real concurrency; RedisDB and
// RedisPrefix give the real Redis.
func Miniredis(t testing.TB) *redis.Client {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
