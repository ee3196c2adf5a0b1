package websession

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps the sessions signed in, by id (a hash of the session's
// nonce; never the cookie). A session the Store does not hold is refused
// even with a well-signed, unexpired cookie.
type Store interface {
	// Add keeps a new session for ttl.
	Add(ctx context.Context, id string, ttl time.Duration) error
	// Has reports whether the session is kept (signed in, not ended).
	Has(ctx context.Context, id string) (bool, error)
	// Delete ends the session.
	Delete(ctx context.Context, id string) error
}

// RedisStore keeps sessions in Redis, one key per session expiring with
// it, under Prefix+"websession:". Every worker replica given the same
// Redis and prefix sees the same sessions: a sign-out on one is a
// sign-out on all.
type RedisStore struct {
	Client redis.UniversalClient
	Prefix string
}

var _ Store = RedisStore{}

func (s RedisStore) key(id string) string { return s.Prefix + "websession:" + id }

// Add keeps a new session for ttl.
func (s RedisStore) Add(ctx context.Context, id string, ttl time.Duration) error {
	if err := s.Client.Set(ctx, s.key(id), 1, ttl).Err(); err != nil {
		return fmt.Errorf("websession: redis: %w", err)
	}
	return nil
}

// Has reports whether the session is kept.
func (s RedisStore) Has(ctx context.Context, id string) (bool, error) {
	n, err := s.Client.Exists(ctx, s.key(id)).Result()
	if err != nil {
		return false, fmt.Errorf("websession: redis: %w", err)
	}
	return n == 1, nil
}

// Delete ends the session.
func (s RedisStore) Delete(ctx context.Context, id string) error {
	if err := s.Client.Del(ctx, s.key(id)).Err(); err != nil {
		return fmt.Errorf("websession: redis: %w", err)
	}
	return nil
}

// MemoryStore keeps sessions in this process only: for one worker, and
// tests. Expired sessions are dropped as new ones are added.
type MemoryStore struct {
	mu       sync.Mutex
	now      func() time.Time
	sessions map[string]time.Time // id → expiry
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore on the clock now (nil:
// time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{now: now, sessions: map[string]time.Time{}}
}

// Add keeps a new session for ttl.
func (m *MemoryStore) Add(_ context.Context, id string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for k, exp := range m.sessions {
		if !now.Before(exp) {
			delete(m.sessions, k)
		}
	}
	m.sessions[id] = now.Add(ttl)
	return nil
}

// Has reports whether the session is kept and unexpired.
func (m *MemoryStore) Has(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.sessions[id]
	return ok && m.now().Before(exp), nil
}

// Delete ends the session.
func (m *MemoryStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}
