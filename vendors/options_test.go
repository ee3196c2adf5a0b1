package vendors_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors"
)

func TestParseHTTPURL(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"https://auth.example/token", "http://127.0.0.1:8080/t?x=1", "https://u:p@auth.example/"} {
		u, err := vendors.ParseHTTPURL(s)
		require.NoError(t, err, s)
		require.Equal(t, s, u.String())
	}
	for _, s := range []string{"", "/token", "auth.example/token", "ftp://auth.example/", "https://", "http://%zz/"} {
		_, err := vendors.ParseHTTPURL(s)
		require.ErrorIs(t, err, vendors.ErrNotHTTPURL, s)
	}
}

func TestParseEndpointURL(t *testing.T) {
	t.Parallel()
	_, err := vendors.ParseEndpointURL("https://auth.example/v2/auth/token")
	require.NoError(t, err)
	_, err = vendors.ParseEndpointURL("token")
	require.ErrorIs(t, err, vendors.ErrNotHTTPURL)
	for _, s := range []string{"https://auth.example/?a=b", "https://auth.example/#f", "https://u@auth.example/"} {
		_, err := vendors.ParseEndpointURL(s)
		require.ErrorIs(t, err, vendors.ErrURLExtras, s)
	}
}

func TestParseBaseURL(t *testing.T) {
	t.Parallel()
	const def = "https://api.example/v1/"
	tests := []struct {
		in, hint, want, err string
	}{
		{"", "", def, ""},
		{"https://eu.example/main", "", "https://eu.example/main/", ""},
		{"http://127.0.0.1:9/x/", "", "http://127.0.0.1:9/x/", ""},
		{"/main/", "use " + def, "", `base_url "/main/" is not an http(s) URL; use ` + def},
		{"ftp://x/main", "", "", `base_url "ftp://x/main/" is not an http(s) URL`},
		{"https://x/main/?a=b", "", "", `base_url "https://x/main/?a=b/" must not have a query, fragment or user info`},
	}
	for _, tt := range tests {
		u, err := vendors.ParseBaseURL(tt.in, def, tt.hint)
		if tt.err != "" {
			require.EqualError(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, u.String())
	}
	_, err := vendors.ParseBaseURL("", "", "")
	require.ErrorIs(t, err, vendors.ErrNotHTTPURL, "no default: the adapter requires one first")
}

func TestCheckUserAgent(t *testing.T) {
	t.Parallel()
	require.NoError(t, vendors.CheckUserAgent(""))
	require.NoError(t, vendors.CheckUserAgent("Acme Sync (ops@acme.example)"))
	require.EqualError(t, vendors.CheckUserAgent("a\r\nX-Evil: 1"), "user_agent must be one line")
	require.Error(t, vendors.CheckUserAgent("a\nb"))
}
