package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// consumerStats is what the token.get consumers saw.
type consumerStats struct {
	mu        sync.Mutex
	Requests  int
	Tokens    int            // answers with a token
	Errors    map[string]int // error answers by kind ("timeout" when none came)
	Latencies []time.Duration
	// Violations are tokens served already expired, or refused by the
	// vendor as expired or unknown when used at once.
	Violations []string
	// VendorChecks counts tokens used at the vendor; VendorOther counts
	// uses answered neither 200 nor 401 (429, network).
	VendorChecks int
	VendorOther  int
	// NearEnd counts tokens served with less than nearEnd of life left:
	// legal, but a sign of renewals running late.
	NearEnd int
	// LateUses counts tokens the vendor refused because they expired
	// between the answer and their use (served with under nearEnd left).
	LateUses int
}

// nearEnd is the remaining life under which a served token counts as
// near its end.
const nearEnd = 5 * time.Second

func (s *consumerStats) errorKind(kind string) {
	s.mu.Lock()
	s.Requests++
	s.Errors[kind]++
	s.mu.Unlock()
}

func (s *consumerStats) violation(format string, args ...any) {
	s.mu.Lock()
	s.Violations = append(s.Violations, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// tokenReply is a token.get answer (the DESIGN's contract).
type tokenReply struct {
	AccessToken string    `json:"access_token"`
	ExpiresAt   time.Time `json:"expires_at"`
	Generation  int64     `json:"generation"`
	Error       string    `json:"error"`
}

// runConsumers runs n services asking token.get for random credentials,
// as subscribed services do, until ctx ends: each token must not be
// expired on receipt, and is used at once on the vendor (the sandbox's
// Patient endpoint), which must accept it.
func runConsumers(ctx context.Context, n int, natsURL, sandboxURL, vendor string, creds []string, pause time.Duration) (*consumerStats, func(), error) {
	stats := &consumerStats{Errors: map[string]int{}}
	nc, err := nats.Connect(natsURL, nats.Name("chaos-consumers"), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: consumers: %w", err)
	}
	httpc := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				cred := creds[rand.IntN(len(creds))]
				consumeOnce(ctx, nc, httpc, stats, sandboxURL, vendor, cred)
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	return stats, func() { wg.Wait(); nc.Close() }, nil
}

func consumeOnce(ctx context.Context, nc *nats.Conn, httpc *http.Client, stats *consumerStats, sandboxURL, vendor, cred string) {
	reqCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	msg, err := nc.RequestWithContext(reqCtx, "token.get."+vendor+"."+cred, nil)
	received := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			stats.errorKind("no answer")
		}
		return
	}
	var rep tokenReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		stats.errorKind("malformed")
		return
	}
	if rep.Error != "" {
		stats.errorKind(rep.Error)
		return
	}
	stats.mu.Lock()
	stats.Requests++
	stats.Tokens++
	stats.Latencies = append(stats.Latencies, received.Sub(start))
	if rep.ExpiresAt.Sub(received) < nearEnd {
		stats.NearEnd++
	}
	stats.mu.Unlock()
	if !rep.ExpiresAt.After(received) {
		stats.violation("%s: token.get served generation %d expired at %s, received %s", cred, rep.Generation,
			rep.ExpiresAt.Format(time.RFC3339Nano), received.Format(time.RFC3339Nano))
		return
	}
	// Use it at once, as a service would.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sandboxURL+sandbox.HalaxyPath+"Patient?_count=1", nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+rep.AccessToken)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := httpc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			stats.mu.Lock()
			stats.VendorOther++
			stats.mu.Unlock()
		}
		return
	}
	resp.Body.Close()
	stats.mu.Lock()
	stats.VendorChecks++
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		if rep.ExpiresAt.Sub(received) < nearEnd && !rep.ExpiresAt.After(time.Now()) {
			stats.LateUses++
			break
		}
		stats.Violations = append(stats.Violations, fmt.Sprintf("%s: the vendor refused generation %d (expires_at %s) at %s",
			cred, rep.Generation, rep.ExpiresAt.Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano)))
	default:
		stats.VendorOther++
	}
	stats.mu.Unlock()
}
