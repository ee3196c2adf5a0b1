package vendors_test

import (
	"encoding/json"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

func TestParseExpiresIn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want time.Duration
		ok   bool
		err  bool
	}{
		{``, 0, false, false},
		{`null`, 0, false, false},
		{` 900 `, 15 * time.Minute, true, false},
		{`"900"`, 15 * time.Minute, true, false},
		{`1.5`, 1500 * time.Millisecond, true, false},
		{`0`, 0, true, true},
		{`-1`, 0, true, true},
		{`"soon"`, 0, true, true},
		{`"NaN"`, 0, true, true},
		{`true`, 0, true, true},
		{`1e300`, math.MaxInt64, true, false},
	}
	for _, tt := range tests {
		d, ok, err := vendors.ParseExpiresIn(json.RawMessage(tt.raw))
		require.Equal(t, tt.want, d, tt.raw)
		require.Equal(t, tt.ok, ok, tt.raw)
		if tt.err {
			require.EqualError(t, err, "expires_in is not a positive number of seconds", tt.raw)
		} else {
			require.NoError(t, err, tt.raw)
		}
	}
}

func TestSeconds(t *testing.T) {
	t.Parallel()
	d, err := vendors.Seconds(300)
	require.NoError(t, err)
	require.Equal(t, 5*time.Minute, d)
	d, err = vendors.Seconds(math.Inf(1))
	require.NoError(t, err)
	require.Equal(t, time.Duration(math.MaxInt64), d)
	for _, n := range []float64{0, -1, math.NaN(), math.Inf(-1)} {
		_, err := vendors.Seconds(n)
		require.Error(t, err, n)
	}
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	issued := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	s := &vendors.Sender{Vendor: "acme"}
	both := vendors.TokenRules{RequireExpiresIn: true, RefreshToken: true}
	tests := []struct {
		name  string
		body  string
		rules vendors.TokenRules
		want  vendors.Token
		err   string // a part of the message, "" for success
	}{
		{"full", `{"access_token":"tok-abc","token_type":"bearer","expires_in":900,"refresh_token":"rt-abc"}`, both,
			vendors.Token{AccessToken: secret.New("tok-abc"), TokenType: "bearer", ClaimedLifetime: 15 * time.Minute,
				IssuedAt: issued, RefreshToken: secret.New("rt-abc")}, ""},
		{"refresh token not read", `{"access_token":"tok-abc","expires_in":"60","refresh_token":"rt-abc"}`, vendors.TokenRules{},
			vendors.Token{AccessToken: secret.New("tok-abc"), TokenType: "Bearer", ClaimedLifetime: time.Minute, IssuedAt: issued}, ""},
		{"expires_in optional", `{"access_token":"tok-abc"}`, vendors.TokenRules{RefreshToken: true},
			vendors.Token{AccessToken: secret.New("tok-abc"), TokenType: "Bearer", IssuedAt: issued}, ""},
		{"null refresh token", `{"access_token":"tok-abc","expires_in":60,"refresh_token":null}`, both,
			vendors.Token{AccessToken: secret.New("tok-abc"), TokenType: "Bearer", ClaimedLifetime: time.Minute, IssuedAt: issued}, ""},
		{"expires_in required", `{"access_token":"tok-abc"}`, both, vendors.Token{}, "answer has no expires_in"},
		{"bad expires_in", `{"access_token":"tok-abc","expires_in":-5}`, vendors.TokenRules{}, vendors.Token{}, "expires_in is not a positive number"},
		{"not JSON", `access_token=tok-abc`, both, vendors.Token{}, `answer is not a JSON token (20 bytes, Content-Type "text/plain")`},
		{"refresh token not a string", `{"access_token":"tok-abc","expires_in":60,"refresh_token":7}`, both, vendors.Token{}, "not a JSON token"},
		{"no access token", `{"token_type":"Bearer","expires_in":60}`, both, vendors.Token{}, "answer has no access_token"},
		{"an error instead", `{"error":"invalid_client"}`, both, vendors.Token{}, `answer has no access_token but error "invalid_client"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ans := vendors.Answer{Status: http.StatusOK, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(tt.body)}
			tok, verr := s.ParseToken("request token", ans, issued, tt.rules)
			if tt.err == "" {
				require.Nil(t, verr)
				require.Equal(t, tt.want, tok)
				return
			}
			require.NotNil(t, verr)
			require.Equal(t, vendors.ClassMalformed, verr.Class)
			require.Equal(t, http.StatusOK, verr.Status)
			require.Equal(t, "request token", verr.Op)
			require.Contains(t, verr.Error(), tt.err)
			require.NotContains(t, verr.Error(), "tok-abc", "the answer is never quoted")
		})
	}
}
