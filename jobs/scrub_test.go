package jobs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// An adapter that quotes a vendor without scrubbing it (the last line of
// defence is tested here, not the adapters) gets no secret of the
// credential into its stored last_error, its events or the log, for a
// transient failure as for a revocation.
func TestRefreshFailureNeverRecordsASecret(t *testing.T) {
	t.Parallel()
	const (
		sec     = `leaky/client+secret "0123456789"`
		refresh = "rt-0123456789abcdef"
	)
	leak := "you sent " + sec + " | " + url.QueryEscape(sec) + " | Basic " +
		base64.StdEncoding.EncodeToString([]byte("cid2:"+sec)) + " | grant " + refresh
	for name, err := range map[string]error{
		"transient": &vendors.Error{Vendor: "halaxy-au", Op: "request token", Class: vendors.ClassServer, Status: 503,
			Err: errors.New(leak)},
		"revoked": &vendors.Error{Vendor: "halaxy-au", Op: "request token", Class: vendors.ClassRevoked, Status: 401,
			Err: fmt.Errorf("%w: %s", vendors.ErrRevoked, leak)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			logs := &testenv.Buffer{}
			b.h.d.Logger = zerolog.New(logs)
			ctx := context.Background()
			_, uerr := b.st.Upsert(ctx, store.NewCredential{ID: "c2", Vendor: "halaxy-au", ClientID: "cid2",
				Keys: store.Keys{ClientSecret: secret.New(sec), RefreshToken: secret.New(refresh)}})
			require.NoError(t, uerr)
			b.answer(vendors.Token{}, err)
			require.NoError(t, b.h.Handle(ctx, Refresh{Credential: "c2", Generation: 0}))

			c, gerr := b.st.Get(ctx, "c2")
			require.NoError(t, gerr)
			require.Contains(t, c.LastError, "you sent "+secret.Redacted)
			var raw strings.Builder
			for _, env := range b.outbox(t) {
				raw.WriteString(string(env.Data))
			}
			require.Contains(t, raw.String(), "you sent "+secret.Redacted)
			keys, kerr := b.rdb.Keys(ctx, "*").Result()
			require.NoError(t, kerr)
			for _, k := range keys {
				if typ := b.rdb.Type(ctx, k).Val(); typ == "hash" {
					raw.WriteString(fmt.Sprint(b.rdb.HGetAll(ctx, k).Val()))
				}
			}
			for where, text := range map[string]string{"last_error": c.LastError, "events and Redis": raw.String(), "log": logs.String()} {
				for _, s := range []string{sec, url.QueryEscape(sec), `secret \"0123456789\"`, refresh,
					base64.StdEncoding.EncodeToString([]byte("cid2:" + sec))[4:]} {
					require.NotContains(t, text, s[:secret.MinRun+4], "%s holds a secret", where)
				}
			}
		})
	}
}
