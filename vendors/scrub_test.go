package vendors_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/oauth2cc"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
)

// leakyCred has a secret in every field, each with characters that every
// encoding writes differently.
var leakyCred = vendors.Credential{ID: "c-1", ClientID: "client 1/x",
	ClientSecret: secret.New(`cs/+"<&> é-0123456789abcdef`),
	APIKey:       secret.New(`ak/+"<&> é-0123456789abcdef`),
	RefreshToken: secret.New(`rt/+"<&> é-0123456789abcdef`)}

// secretSpellings are what no error message may hold, MinRun characters
// of each.
func secretSpellings(c vendors.Credential) []string {
	jsonOf := func(s string) string { b, _ := json.Marshal(s); return string(b[1 : len(b)-1]) }
	var out []string
	for _, v := range []secret.Value{c.ClientSecret, c.APIKey, c.RefreshToken} {
		s := v.Reveal()
		out = append(out, s, url.QueryEscape(s), url.PathEscape(s), jsonOf(s),
			base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s)))
	}
	out = append(out, base64.StdEncoding.EncodeToString(
		[]byte(url.QueryEscape(c.ClientID) + ":" + url.QueryEscape(c.ClientSecret.Reveal())))[16:])
	return out
}

// echoServer answers every request with status, its body repeating what
// the request carried (its Authorization header and body) and every secret
// of c in every spelling, as an OAuth error (JSON) or as text, in a body
// past the read limit.
func echoServer(t *testing.T, c vendors.Credential, status int, asJSON bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		echo := "Authorization: " + r.Header.Get("Authorization") + " body: " + string(body) + " | " +
			strings.Join(secretSpellings(c), " | ")
		if asJSON {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": echo})
			return
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, echo+strings.Repeat(" filler", vendors.MaxAnswer/7)+echo)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// Every adapter quotes a hostile vendor's error answer, to a token request
// or a key check, scrubbed of the credential's secrets in every spelling,
// and keeps the OAuth error code.
func TestAdaptersScrubWhatTheVendorEchoes(t *testing.T) {
	t.Parallel()
	type newAdapter func(base string) (vendors.TokenSource, error)
	adapters := map[string]newAdapter{
		"oauth2 basic": func(base string) (vendors.TokenSource, error) {
			return oauth2cc.New(oauth2cc.Options{TokenURL: base + "token"})
		},
		"oauth2 params": func(base string) (vendors.TokenSource, error) {
			return oauth2cc.New(oauth2cc.Options{TokenURL: base + "token", AuthStyle: oauth2.AuthStyleInParams})
		},
		"halaxy": func(base string) (vendors.TokenSource, error) {
			return halaxy.New(halaxy.Options{BaseURL: base, UserAgent: "test (test@example.com)"})
		},
		"healthsync oauth": func(base string) (vendors.TokenSource, error) {
			return healthsync.New(healthsync.Options{BaseURL: base, Mode: healthsync.ModeOAuth})
		},
		"healthsync api key": func(base string) (vendors.TokenSource, error) {
			return healthsync.New(healthsync.Options{BaseURL: base, Mode: healthsync.ModeAPIKey})
		},
		"redox legacy": func(base string) (vendors.TokenSource, error) {
			return redoxlegacy.New(redoxlegacy.Options{BaseURL: base, Mode: redoxlegacy.ModeRefresh})
		},
	}
	for name, mk := range adapters {
		for _, tc := range []struct {
			status int
			asJSON bool
		}{{http.StatusBadRequest, true}, {http.StatusServiceUnavailable, false}} {
			t.Run(fmt.Sprintf("%s %d", name, tc.status), func(t *testing.T) {
				t.Parallel()
				a, err := mk(echoServer(t, leakyCred, tc.status, tc.asJSON))
				require.NoError(t, err)
				_, err = a.Token(context.Background(), leakyCred)
				require.Error(t, err)
				msg := err.Error()
				require.Contains(t, msg, secret.Redacted)
				if tc.asJSON && name != "redox legacy" {
					require.Contains(t, msg, "invalid_request: ", "the OAuth code survives")
				}
				require.LessOrEqual(t, len(msg), 400)
				for _, sp := range secretSpellings(leakyCred) {
					require.NotContains(t, msg, sp[:secret.MinRun], "the error quotes a secret: %s", msg)
				}
			})
		}
	}
}
