package budget_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const sandboxUA = "Budget Test (ops@example.com)"

// halaxyToken gets a token of client from the sandbox's Halaxy.
func halaxyToken(t *testing.T, srv *httptest.Server, client, secret string) string {
	t.Helper()
	body, err := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": client, "client_secret": secret})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, srv.URL+sandbox.HalaxyPath+"oauth/token", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", sandboxUA)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	return tok.AccessToken
}

// TestBudgetKeepsTheSandboxWindow: 8 workers over 2 processes read from
// the sandbox's Halaxy through the budget, configured above the true
// limit; every request completes once and, by the sandbox's own record, no
// window ever holds more than the true limit's worth of requests beyond
// the few the budget needed to learn it.
func TestBudgetKeepsTheSandboxWindow(t *testing.T) {
	t.Parallel()
	const (
		client   = "bulk-client"
		secret   = "bulk-secret-value"
		trueLim  = 40
		requests = 120
	)
	per := time.Second
	sb := sandbox.New(sandbox.Options{HalaxyRateLimit: trueLim, HalaxyRateWindow: per})
	sb.AddClient(client, secret)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	tok := halaxyToken(t, srv, client, secret)

	// Configured 50, truly 40: the headers of the first answers correct it.
	// The slack covers the delay from a permit to the sandbox's clock
	// reading (a loaded machine under -race: tens of milliseconds).
	bs := setup(t, 2, budget.Options{Slack: 50 * time.Millisecond})
	lim := budget.Limit{Requests: 50, Per: per}
	account := budget.Account("halaxy", client)
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		b := bs[w%2]
		wg.Go(func() {
			for next.Add(1) <= requests {
				for {
					ok, retryAt, err := b.Take(ctx, account, lim, budget.Bulk)
					if err != nil {
						t.Error(err)
						return
					}
					if !ok {
						time.Sleep(time.Until(retryAt))
						continue
					}
					req, _ := http.NewRequest(http.MethodGet, srv.URL+sandbox.HalaxyPath+"Patient", nil)
					req.Header.Set("Accept", "application/fhir+json")
					req.Header.Set("User-Agent", sandboxUA)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := srv.Client().Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if _, err := b.Observe(ctx, account, lim, resp.StatusCode, resp.Header); err != nil {
						t.Error(err)
						return
					}
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	rec := sb.RateRecord(client)
	var accepted, refused []time.Time
	for _, h := range rec {
		if h.Accepted {
			accepted = append(accepted, h.At)
		} else {
			refused = append(refused, h.At)
		}
	}
	t.Logf("%d requests refused with 429", len(refused))
	require.Len(t, accepted, requests, "every request completes once")
	// Only requests sent before the first answer told the true limit can
	// have been refused: at most the configured limit's excess.
	require.LessOrEqual(t, len(refused), 50-trueLim)
	st, err := bs[0].Status(ctx, account, lim)
	require.NoError(t, err)
	require.Equal(t, trueLim, st.Limit)
}
