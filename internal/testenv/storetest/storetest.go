// Package storetest gives the unit tests of the code around the credential
// store a store of their own on a fresh in-process Redis. It is a package
// apart from testenv so that testenv does not depend on the store (nor on
// the events package the store writes to).
package storetest

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// T0 is when the tests' clocks start.
var T0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// New returns a store under the prefix "t:" on a fresh miniredis (see
// testenv.Miniredis), sealing with an all-zero key and reading clock, and
// the Redis client it uses.
func New(t testing.TB, clock func() time.Time) (*store.Store, *redis.Client) {
	t.Helper()
	rdb := testenv.Miniredis(t)
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	if err != nil {
		t.Fatalf("storetest: keyring: %v", err)
	}
	st, err := store.New(rdb, store.Options{Prefix: "t:", Keyring: kr, Clock: clock})
	if err != nil {
		t.Fatalf("storetest: store: %v", err)
	}
	return st, rdb
}
