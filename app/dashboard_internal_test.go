package app

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedactPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, payload string
		show, hide    []string
	}{
		{name: "refresh ids are shown", payload: `{"credential":"clinic-42","generation":7}`,
			show: []string{`"credential": "clinic-42"`, `"generation": 7`}},
		{name: "request headers", payload: `{"headers":{"Authorization":"Bearer s3cr3t-a","Cookie":"sid=s3cr3t-b","X-Api-Key":"s3cr3t-c","Accept":"application/fhir+json"}}`,
			show: []string{"application/fhir+json", "Accept"}, hide: []string{"s3cr3t-a", "s3cr3t-b", "s3cr3t-c"}},
		{name: "tokens anywhere", payload: `{"refresh_token":"s3cr3t-d","nested":[{"client_secret":"s3cr3t-e"}],"query":{"access_token":["s3cr3t-f"]}}`,
			hide: []string{"s3cr3t-d", "s3cr3t-e", "s3cr3t-f"}},
		{name: "a bearer value under an innocent key", payload: `{"x":"Bearer s3cr3t-g","y":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.s3cr3t-h"}`,
			hide: []string{"s3cr3t-g", "s3cr3t-h"}},
		{name: "a JSON body is cut and redacted", payload: `{"body":{"password":"s3cr3t-i","text":"` + strings.Repeat("a", 300) + `s3cr3t-j"}}`,
			show: []string{"bytes in all"}, hide: []string{"s3cr3t-i", "s3cr3t-j"}},
		{name: "a base64 body shows its size only", payload: `{"body":"czNjcjN0LWs="}`,
			show: []string{"12 characters: not shown"}, hide: []string{"czNjcjN0LWs="}},
		{name: "not JSON", payload: `s3cr3t-l`, show: []string{"8 bytes, not JSON"}, hide: []string{"s3cr3t-l"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := redactPayload("any", []byte(tc.payload))
			for _, s := range tc.show {
				require.Contains(t, got, s)
			}
			for _, s := range tc.hide {
				require.NotContains(t, got, s)
			}
		})
	}
}
