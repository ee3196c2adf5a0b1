package websession

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ThrottleOptions tune a Throttle. Zero values take the defaults given.
type ThrottleOptions struct {
	// Free is how many wrong tokens a client may send before it is
	// throttled (5).
	Free int
	// Lock is how long the client is then refused (1m); each further
	// failure doubles it, up to MaxLock (1h).
	Lock, MaxLock time.Duration
	// Forget is how long after its last failure a client's count is
	// forgotten (15m, or the lock if longer).
	Forget time.Duration
	// MaxClients bounds the clients counted at once (10,000). When that
	// many have failed recently, a new client is throttled too: an
	// attacker with many addresses can delay sign-ins, not guess faster.
	MaxClients int
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Throttle counts the wrong admin tokens each client sends (by the
// address of its connection: X-Forwarded-For is not trusted, since any
// client can write it) and refuses a client that sent too many for a
// while. The count lives in this process: each worker replica counts on
// its own, so N replicas behind a load balancer allow N times the
// attempts.
type Throttle struct {
	o       ThrottleOptions
	mu      sync.Mutex
	clients map[string]*client
}

type client struct {
	failures    int
	lockedUntil time.Time
	last        time.Time
}

// NewThrottle returns a Throttle.
func NewThrottle(o ThrottleOptions) *Throttle {
	if o.Free <= 0 {
		o.Free = 5
	}
	if o.Lock <= 0 {
		o.Lock = time.Minute
	}
	if o.MaxLock <= 0 {
		o.MaxLock = time.Hour
	}
	if o.Forget <= 0 {
		o.Forget = 15 * time.Minute
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Throttle{o: o, clients: map[string]*client{}}
}

// ClientOf is the client a request counts against: the IP address of its
// connection.
func ClientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Check runs compare (a token comparison) for the request's client unless
// it is throttled, and counts the outcome: a failure against the client,
// a success clears it. It returns nil, ErrWrongToken or a
// *ThrottledError.
func (t *Throttle) Check(r *http.Request, compare func() bool) error {
	key := ClientOf(r)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.o.Now()
	c := t.clients[key]
	if c != nil && now.Before(c.lockedUntil) {
		return &ThrottledError{RetryAfter: c.lockedUntil.Sub(now)}
	}
	if c != nil && now.Sub(c.last) >= t.o.Forget {
		delete(t.clients, key) // failures long past are forgotten
		c = nil
	}
	if c == nil && len(t.clients) >= t.o.MaxClients {
		t.sweep(now)
		if len(t.clients) >= t.o.MaxClients {
			return &ThrottledError{RetryAfter: t.o.Lock}
		}
	}
	if compare() {
		delete(t.clients, key)
		return nil
	}
	if c == nil {
		c = &client{}
		t.clients[key] = c
	}
	c.failures++
	c.last = now
	if n := c.failures - t.o.Free; n >= 0 {
		lock := t.o.MaxLock
		if n < 30 && t.o.Lock<<n < t.o.MaxLock {
			lock = t.o.Lock << n
		}
		c.lockedUntil = now.Add(lock)
	}
	return ErrWrongToken
}

// sweep forgets the clients whose lock is over and whose last failure is
// older than Forget.
func (t *Throttle) sweep(now time.Time) {
	for k, c := range t.clients {
		if !now.Before(c.lockedUntil) && now.Sub(c.last) >= t.o.Forget {
			delete(t.clients, k)
		}
	}
}
