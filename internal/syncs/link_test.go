package syncs

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors"
)

func TestOnBase(t *testing.T) {
	t.Parallel()
	const base = "https://api.example.com/main/"
	for _, tc := range []struct {
		next, path, query string
		refused           bool
	}{
		{next: "https://api.example.com/main/Patient?_count=10&_after=9", path: "Patient", query: "_after=9&_count=10"},
		{next: "https://API.example.com/main/records?after=5", path: "records", query: "after=5"},
		{next: "Patient?page=2", path: "Patient", query: "page=2"},
		{next: "/main/Patient?page=2", path: "Patient", query: "page=2"},
		{next: "https://attacker.example/main/Patient", refused: true},
		{next: "http://api.example.com/main/Patient", refused: true},
		{next: "https://api.example.com:8443/main/Patient", refused: true},
		{next: "https://user:pw@api.example.com/main/Patient", refused: true},
		{next: "https://api.example.com/admin/Patient", refused: true},
		{next: "https://api.example.com/main/../admin", refused: true},
		{next: "https://api.example.com/main/%2e%2e/admin", refused: true},
		{next: "https://api.example.com/mainly/Patient", refused: true},
		{next: "//attacker.example/main/Patient", refused: true},
		{next: "https://api.example.com/main/", refused: true},
	} {
		path, q, err := onBase(base, tc.next)
		if tc.refused {
			require.ErrorIs(t, err, errOffBase, tc.next)
			continue
		}
		require.NoError(t, err, tc.next)
		require.Equal(t, tc.path, path, tc.next)
		require.Equal(t, tc.query, q.Encode(), tc.next)
	}
}

func TestLinkNext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{[]string{`<https://a/v1/records?after=20>; rel="next"`}, "https://a/v1/records?after=20"},
		{[]string{`<https://a/p1>; rel="prev", <https://a/p3>; rel="next"`}, "https://a/p3"},
		{[]string{`<https://a/p1>; rel="prev"`, `<https://a/p3>; title="a, b"; rel=next`}, "https://a/p3"},
		{[]string{`<https://a/p3>; rel="last next"`}, "https://a/p3"},
		{[]string{`<https://a/p3>; rel="nextish"`}, ""},
		{nil, ""},
	} {
		require.Equal(t, tc.want, linkNext(tc.values), "%q", tc.values)
	}
}

func TestParsePage(t *testing.T) {
	t.Parallel()
	fhir := `{"resourceType":"Bundle","meta":{"lastUpdated":"2026-01-02T03:04:05.123Z"},"total":7,
		"link":[{"relation":"self","url":"s"},{"relation":"next","url":"n"}],
		"entry":[{"resource":{"resourceType":"Patient","id":"1"}},{"resource":{"resourceType":"Patient","id":"2"}}]}`
	p, err := parsePage(vendors.Answer{Status: 200, Body: []byte(fhir), Header: http.Header{}})
	require.NoError(t, err)
	require.Equal(t, 2, p.count)
	require.Equal(t, 7, p.total)
	require.Equal(t, "n", p.next)
	require.Equal(t, "2026-01-02T03:04:05.123Z", p.served.UTC().Format("2006-01-02T15:04:05.000Z"))
	require.JSONEq(t, `[{"resourceType":"Patient","id":"1"},{"resourceType":"Patient","id":"2"}]`, string(p.resources))

	h := http.Header{"Link": {`<https://a/v1/records?after=2>; rel="next"`}, "Date": {"Mon, 07 Dec 2026 04:00:00 GMT"}}
	p, err = parsePage(vendors.Answer{Status: 200, Body: []byte(`{"data":[{"id":"r1"}],"has_more":true}`), Header: h})
	require.NoError(t, err)
	require.Equal(t, 1, p.count)
	require.Equal(t, -1, p.total)
	require.Equal(t, "https://a/v1/records?after=2", p.next)
	require.Equal(t, 2026, p.served.Year())

	for _, bad := range []string{``, `<html>`, `{"nothing":1}`, `"str"`} {
		_, err := parsePage(vendors.Answer{Status: 200, Body: []byte(bad), Header: http.Header{}})
		require.Error(t, err, bad)
	}
}
