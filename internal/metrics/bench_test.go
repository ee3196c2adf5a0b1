package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
)

// BenchmarkCredentialsScrape measures one uncached /metrics scrape of the
// credential gauges: a walk of every credential in the store and the
// encoding of two series per credential. TOKENRELAY_BENCH_CREDENTIALS sets
// the fleet size (default 100000).
func BenchmarkCredentialsScrape(b *testing.B) {
	n := 100_000
	if s := os.Getenv("TOKENRELAY_BENCH_CREDENTIALS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(b)
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: kr})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(32)
	now := time.Now()
	for i := range n {
		g.Go(func() error {
			id := fmt.Sprintf("c%06d", i)
			vendor := fmt.Sprintf("vendor-%d", i%5)
			if _, err := st.Upsert(ctx, store.NewCredential{ID: id, Vendor: vendor, ClientID: id,
				Keys: store.Keys{ClientSecret: secret.New("s")}}); err != nil {
				return err
			}
			if _, err := st.Claim(ctx, id, 0, "bench", time.Minute); err != nil {
				return err
			}
			ev, err := events.New(events.TypeTokenRenewed, vendor, id, now, events.TokenRenewed{Vendor: vendor, Credential: id, Generation: 1})
			if err != nil {
				return err
			}
			return st.CommitRenewal(ctx, id, "bench", 0, store.Renewal{
				Token:       store.Token{AccessToken: secret.New("t"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)},
				NextRefresh: now.Add(40 * time.Minute)}, ev)
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d credentials written in %s", n, time.Since(start).Round(time.Millisecond))
	_ = rdb.Del(ctx, events.OutboxKey(prefix)).Err()

	vendors := []string{"vendor-0", "vendor-1", "vendor-2", "vendor-3", "vendor-4"}
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{
		{"read_and_encode", -1},         // every scrape walks the store (TTL < 0)
		{"served_from_read", time.Hour}, // what a scrape costs between reads
	} {
		b.Run(bc.name, func(b *testing.B) {
			creds, err := metrics.NewCredentials(metrics.CredentialsOptions{Store: st, TTL: bc.ttl, Vendors: vendors})
			if err != nil {
				b.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(creds)
			h := metrics.Handler(reg)
			scrape := func() int {
				rec := &countingWriter{header: http.Header{}}
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				if rec.status != 0 && rec.status != http.StatusOK {
					b.Fatalf("status %d", rec.status)
				}
				return rec.n
			}
			size := scrape() // the first read
			b.ResetTimer()
			for b.Loop() {
				scrape()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}

type countingWriter struct {
	header http.Header
	status int
	n      int
}

func (w *countingWriter) Header() http.Header { return w.header }
func (w *countingWriter) WriteHeader(s int)   { w.status = s }
func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return io.Discard.Write(p)
}
