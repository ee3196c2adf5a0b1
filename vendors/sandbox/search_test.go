package sandbox_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// searchPage is what a test reads of a searchset Bundle.
type searchPage struct {
	Meta  struct{ LastUpdated string } `json:"meta"`
	Total int                          `json:"total"`
	Link  []struct{ Relation, URL string }
	Entry []struct {
		Resource struct {
			ID   string `json:"id"`
			Meta struct {
				VersionID   string `json:"versionId"`
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		} `json:"resource"`
	} `json:"entry"`
}

func (p searchPage) next() string {
	for _, l := range p.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// page fetches one Halaxy search page at an absolute URL or a path after the base.
func (b bundle) page(t *testing.T, target, token string) searchPage {
	t.Helper()
	resp := b.read(t, strings.TrimPrefix(target, b.srv.URL+sandbox.HalaxyPath), token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p searchPage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	return p
}

func TestFHIRSearchPagesToTheEndWithNextLinks(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: time.Hour, HalaxyRateLimit: -1})
	tok := b.halaxyToken(t)
	b.sb.SetFHIRResources(250)
	seen := map[string]bool{}
	target, pages := "Patient?_count=100", 0
	for target != "" {
		p := b.page(t, target, tok)
		pages++
		require.Equal(t, 250, p.Total)
		for _, e := range p.Entry {
			require.False(t, seen[e.Resource.ID], "resource %s served twice", e.Resource.ID)
			seen[e.Resource.ID] = true
			require.Equal(t, "1", e.Resource.Meta.VersionID)
		}
		target = p.next()
		if target != "" {
			require.True(t, strings.HasPrefix(target, b.srv.URL+sandbox.HalaxyPath), "next link %s is on the base URL", target)
		}
	}
	require.Equal(t, 3, pages)
	require.Len(t, seen, 250)
}

func TestFHIRSearchLastUpdatedFindsChangesMadeWhilePaging(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: time.Hour, HalaxyRateLimit: -1})
	tok := b.halaxyToken(t)
	b.sb.SetFHIRResources(300)
	first := b.page(t, "Patient?_count=100", tok)
	mark := first.Meta.LastUpdated
	require.Equal(t, b.clock.Now().Format("2006-01-02T15:04:05.000Z"), mark, "the bundle's lastUpdated is the server's clock")

	// Changes while the client pages: one on the page it has, one on a page to come.
	b.clock.Advance(time.Second)
	b.sb.UpdateFHIRResources("Patient", 5, 250)
	second := b.page(t, first.next(), tok)
	require.Equal(t, "1101", second.Entry[0].Resource.ID, "keyset paging: no resource skipped or repeated")

	since := b.page(t, "Patient?_count=100&_lastUpdated="+url.QueryEscape("gt"+mark), tok)
	require.Equal(t, 2, since.Total)
	require.Len(t, since.Entry, 2)
	require.Equal(t, []string{"1006", "1251"}, []string{since.Entry[0].Resource.ID, since.Entry[1].Resource.ID})
	require.Equal(t, "2", since.Entry[0].Resource.Meta.VersionID)
	require.Empty(t, since.next())

	resp := b.read(t, "Patient?_lastUpdated=lt2020-01-01T00:00:00Z", tok)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestHealthSyncRecordsPageWithLinkHeader(t *testing.T) {
	t.Parallel()
	b := start(t, sandbox.Options{})
	_, key := b.sb.AddHealthSyncKey(hsAccount, []string{"read"})
	b.sb.SetFHIRResources(45)
	linkRE := regexp.MustCompile(`^<([^>]+)>; rel="next"$`)
	get := func(target string) (ids []string, next string, date string) {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp := b.do(t, req)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var body struct {
			Data []struct {
				ID        string `json:"id"`
				UpdatedAt string `json:"updated_at"`
			} `json:"data"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		for _, d := range body.Data {
			ids = append(ids, d.ID)
		}
		if m := linkRE.FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			next = m[1]
		}
		return ids, next, resp.Header.Get("Date")
	}
	var all []string
	target := b.srv.URL + sandbox.HealthSyncPath + "records?limit=20"
	for target != "" {
		ids, next, date := get(target)
		require.Equal(t, b.clock.Now().Format(http.TimeFormat), date, "Date is the sandbox clock's")
		all = append(all, ids...)
		target = next
	}
	require.Len(t, all, 45)
	require.Equal(t, "rec_1001", all[0])

	b.clock.Advance(time.Minute)
	b.sb.UpdateFHIRResources("records", 40)
	ids, next, _ := get(b.srv.URL + sandbox.HealthSyncPath + "records?updated_since=" + url.QueryEscape(t0.Add(time.Second).Format(time.RFC3339)))
	require.Equal(t, []string{"rec_1041"}, ids)
	require.Empty(t, next)
}
