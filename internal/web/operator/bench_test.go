package operator_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
	"github.com/tokenrelay/tokenrelay/secret"
)

// BenchmarkCredentialsPage measures one page of the credentials view (a
// vendor filter, 50 rows) over a store of OPERATOR_BENCH_N credentials
// (default 100,000) in the real Redis: the whole store is read for each
// page, and one page kept.
func BenchmarkCredentialsPage(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("OPERATOR_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	rdb, prefix := testenv.RedisPrefix(b)
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: kr})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			vendor := "halaxy-au"
			if i%4 == 0 {
				vendor = "portal"
			}
			_, err := st.Upsert(ctx, store.NewCredential{ID: fmt.Sprintf("c-%06d", i), Vendor: vendor, ClientID: "cid",
				Keys: store.Keys{ClientSecret: secret.New("s")}})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(operator.Handler(operator.Deps{Token: secret.New(adminToken), Credentials: st, Logger: zerolog.Nop()}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/credentials?vendor=portal&after=c-050000", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(n), "credentials")
}
