package sandbox_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// read sends a Halaxy FHIR read of path (after the base) with token.
func (b bundle) read(t *testing.T, path, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+sandbox.HalaxyPath+path, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("User-Agent", testUA)
	req.Header.Set("Authorization", "Bearer "+token)
	return b.do(t, req)
}

func TestHalaxyTrueLimitAndRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: time.Hour})
	tok := b.halaxyToken(t)
	// tokenrelay may be configured with 500; the vendor's true limit is 3.
	b.sb.SetHalaxyRateLimit(clientID, 3)
	var want []sandbox.RateHit
	for i := range 3 {
		resp := b.read(t, "Patient", tok)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "3", resp.Header.Get("x-ratelimit-limit"))
		require.Equal(t, []string{string(rune('2' - i))}, resp.Header.Values("x-ratelimit-remaining"))
		require.Empty(t, resp.Header.Values("X-RateLimit-Reset"), "Halaxy sends no reset header")
		want = append(want, sandbox.RateHit{At: b.clock.Now(), Accepted: true})
		b.clock.Advance(10 * time.Second)
	}
	resp := b.read(t, "Appointment/1001", tok)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "30", resp.Header.Get("retry-after"))
	require.Equal(t, "0", resp.Header.Get("x-ratelimit-remaining"))
	want = append(want, sandbox.RateHit{At: b.clock.Now(), Accepted: false})

	// The window slides: 30 s on, the first request has left it.
	b.clock.Advance(30 * time.Second)
	require.Equal(t, http.StatusOK, b.read(t, "Patient/1002", tok).StatusCode)
	want = append(want, sandbox.RateHit{At: b.clock.Now(), Accepted: true})
	require.Equal(t, want, b.sb.RateRecord(clientID))

	// Lowered below what the window holds: room again only when enough left.
	b.sb.SetHalaxyRateLimit(clientID, 1)
	resp = b.read(t, "Patient", tok)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("x-ratelimit-limit"))
	require.Equal(t, "60", resp.Header.Get("retry-after"), "all three must leave: the newest in 60 s")

	// Back to the configured default.
	b.sb.SetHalaxyRateLimit(clientID, 0)
	resp = b.read(t, "Patient", tok)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "500", resp.Header.Get("x-ratelimit-limit"))
}

func TestHalaxyThrottleWithLongRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: time.Hour})
	tok := b.halaxyToken(t)
	b.sb.Throttle(clientID, 20*time.Minute)
	resp := b.read(t, "Patient", tok)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1200", resp.Header.Get("retry-after"))
	require.Equal(t, "500", resp.Header.Get("x-ratelimit-limit"))
	b.clock.Advance(15 * time.Minute)
	resp = b.read(t, "Patient", tok)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "300", resp.Header.Get("retry-after"), "the retry-after counts down")
	b.clock.Advance(5 * time.Minute)
	require.Equal(t, http.StatusOK, b.read(t, "Patient", tok).StatusCode)
	rec := b.sb.RateRecord(clientID)
	require.Len(t, rec, 3)
	require.Equal(t, []bool{false, false, true}, []bool{rec[0].Accepted, rec[1].Accepted, rec[2].Accepted})
}

func TestRateControlHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: time.Hour})
	tok := b.halaxyToken(t)
	control := func(method, path, body string) *http.Response {
		req, err := http.NewRequest(method, b.srv.URL+sandbox.ControlPath+path, strings.NewReader(body))
		require.NoError(t, err)
		return b.do(t, req)
	}
	require.Equal(t, http.StatusNoContent, control(http.MethodPut, "rate/"+clientID+"/limit", `{"limit":1}`).StatusCode)
	require.Equal(t, http.StatusOK, b.read(t, "Patient", tok).StatusCode)
	require.Equal(t, http.StatusTooManyRequests, b.read(t, "Patient", tok).StatusCode)

	require.Equal(t, http.StatusNoContent, control(http.MethodPut, "rate/"+clientID+"/throttle", `{"retry_after":"1h"}`).StatusCode)
	b.clock.Advance(time.Minute)
	resp := b.read(t, "Patient", tok)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "3540", resp.Header.Get("retry-after"))
	require.Equal(t, http.StatusBadRequest, control(http.MethodPut, "rate/"+clientID+"/throttle", `{"retry_after":"soon"}`).StatusCode)
	require.Equal(t, http.StatusNoContent, control(http.MethodPut, "rate/"+clientID+"/throttle", `{}`).StatusCode)
	require.Equal(t, http.StatusOK, b.read(t, "Patient", tok).StatusCode)

	resp = control(http.MethodGet, "rate/"+clientID+"/record", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var rec []sandbox.RateHit
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
	require.Len(t, rec, 4)
	require.Equal(t, []bool{true, false, false, true}, []bool{rec[0].Accepted, rec[1].Accepted, rec[2].Accepted, rec[3].Accepted})
	require.True(t, rec[2].At.Equal(t0.Add(time.Minute)))
	require.Equal(t, http.StatusNoContent, control(http.MethodDelete, "rate/records", "").StatusCode)
	require.Empty(t, b.sb.RateRecord(clientID))
}

func TestHalaxyGenericReads(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: time.Minute})
	tok := b.halaxyToken(t)
	b.sb.SetFHIRResources(5)
	type page struct {
		ResourceType string `json:"resourceType"`
		Total        int    `json:"total"`
		Link         []struct {
			Relation string `json:"relation"`
			URL      string `json:"url"`
		} `json:"link"`
		Entry []struct {
			FullURL  string `json:"fullUrl"`
			Resource struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	// Page through Patient two at a time, following the next links.
	var ids []string
	next := "Patient?_count=2"
	for next != "" {
		resp := b.read(t, next, tok)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var p page
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
		require.Equal(t, 5, p.Total)
		next = ""
		for _, l := range p.Link {
			if l.Relation == "next" {
				next = strings.TrimPrefix(l.URL, b.srv.URL+sandbox.HalaxyPath)
			}
		}
		for _, e := range p.Entry {
			require.Equal(t, "Patient", e.Resource.ResourceType)
			ids = append(ids, e.Resource.ID)
		}
	}
	require.Equal(t, []string{"1001", "1002", "1003", "1004", "1005"}, ids)

	resp := b.read(t, "Practitioner/1005", tok)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/fhir+json")
	require.Equal(t, http.StatusNotFound, b.read(t, "Practitioner/1006", tok).StatusCode)
	require.Equal(t, http.StatusNotFound, b.read(t, "oauth", tok).StatusCode)
	require.Equal(t, http.StatusBadRequest, b.read(t, "Patient?_count=1000", tok).StatusCode)
	require.Len(t, b.sb.RateRecord(clientID), 3+4, "every read passes the rate window")

	// The current token is required: an expired one gets 401, counted.
	b.clock.Advance(time.Minute)
	require.Equal(t, http.StatusUnauthorized, b.read(t, "Patient/1001", tok).StatusCode)
	require.Equal(t, 1, b.sb.ExpiredUses())
	require.Equal(t, http.StatusUnauthorized, b.read(t, "Appointment", "made-up").StatusCode)
	require.Equal(t, 1, b.sb.UnknownUses())
}

func TestHealthSyncThrottleAndRecord(t *testing.T) {
	t.Parallel()
	b := hsSetup(t)
	_, key := b.sb.AddHealthSyncKey(hsAccount, []string{"read"})
	b.sb.SetHealthSyncPlan(hsAccount, 2)
	for range 2 {
		resp, _ := b.hsDo(t, http.MethodGet, "patients", key, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	resp, _ := b.hsDo(t, http.MethodGet, "patients", key, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "0", resp.Header.Get("X-RateLimit-Remaining"))
	reset := resp.Header.Get("X-RateLimit-Reset")
	require.NotEmpty(t, reset)

	b.sb.Throttle(hsAccount, 3*time.Hour)
	resp, _ = b.hsDo(t, http.MethodGet, "patients", key, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "10800", resp.Header.Get("Retry-After"))
	require.Equal(t, reset, resp.Header.Get("X-RateLimit-Reset"))

	rec := b.sb.RateRecord(hsAccount)
	require.Len(t, rec, 4)
	require.Equal(t, []bool{true, true, false, false}, []bool{rec[0].Accepted, rec[1].Accepted, rec[2].Accepted, rec[3].Accepted})
}
