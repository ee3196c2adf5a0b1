package app

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/masterkey"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

// OpenStore connects to Redis alone and opens the credential store with
// the configured master keys (unwrapped by the KMS if so configured), for
// commands such as tokenrelay keys reseal that need neither NATS nor the
// rest of a process. Close the client when done.
func OpenStore(ctx context.Context, cfg *config.Config) (*store.Store, redis.UniversalClient, error) {
	rc, err := redisConnection(cfg.Redis)
	if err != nil {
		return nil, nil, err
	}
	ring, err := masterkey.Keyring(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewUniversalClient(rc.Universal)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, nil, fmt.Errorf("app: connect to redis at %s: %w", rc.Where, err)
	}
	st, err := store.New(rdb, store.Options{Prefix: cfg.Redis.Prefix, Keyring: ring})
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	return st, rdb, nil
}
