package sandbox

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RateHit is one request a rate window judged: when it came (sandbox
// clock) and whether it was let through.
type RateHit struct {
	At       time.Time `json:"at"`
	Accepted bool      `json:"accepted"`
}

// maxRateRecord bounds each account's record of rate decisions: only the
// most recent are kept (a benchmark of 20,000 requests fits many times).
const maxRateRecord = 1_000_000

// rateBook is what the rate windows share: the record of every decision
// per account, and the accounts told to answer 429 for a while.
type rateBook struct {
	mu        sync.Mutex
	hits      map[string][]RateHit
	throttled map[string]time.Time // account: 429 until then
}

func newRateBook() *rateBook {
	return &rateBook{hits: make(map[string][]RateHit), throttled: make(map[string]time.Time)}
}

// record notes a decision about account's request at now.
func (b *rateBook) record(account string, now time.Time, accepted bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	h := append(b.hits[account], RateHit{At: now, Accepted: accepted})
	if len(h) >= 2*maxRateRecord {
		h = append([]RateHit(nil), h[len(h)-maxRateRecord:]...)
	}
	b.hits[account] = h
	b.mu.Unlock()
}

// throttledFor is how long account is still told to wait (0: not
// throttled).
func (b *rateBook) throttledFor(account string, now time.Time) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.throttled[account]
	if !ok {
		return 0
	}
	if !now.Before(until) {
		delete(b.throttled, account)
		return 0
	}
	return until.Sub(now)
}

// RateRecord lists every request of account that a rate window judged
// (Halaxy: an OAuth client id; HealthSync: an account), oldest first: its
// time by the sandbox clock and whether it was accepted or refused with
// 429. Requests refused earlier (bad token, bad headers, faults) are not
// in it. The most recent 1,000,000 are kept.
func (s *Sandbox) RateRecord(account string) []RateHit {
	s.rates.mu.Lock()
	defer s.rates.mu.Unlock()
	h := s.rates.hits[account]
	if len(h) > maxRateRecord {
		h = h[len(h)-maxRateRecord:]
	}
	return append([]RateHit(nil), h...)
}

// ClearRateRecord empties every account's rate record.
func (s *Sandbox) ClearRateRecord() {
	s.rates.mu.Lock()
	clear(s.rates.hits)
	s.rates.mu.Unlock()
}

// Throttle makes every request of account (Halaxy client or HealthSync
// account) answer 429 for d from now, with a retry-after counting down to
// its end, as a vendor's long penalty does; d <= 0 ends it.
func (s *Sandbox) Throttle(account string, d time.Duration) {
	s.rates.mu.Lock()
	if d <= 0 {
		delete(s.rates.throttled, account)
	} else {
		s.rates.throttled[account] = s.clock().Add(d)
	}
	s.rates.mu.Unlock()
	s.log.Info().Str("account", account).Dur("for", d).Msg("account throttled")
}

// SetHalaxyRateLimit sets the true limit of one Halaxy OAuth client, in
// its sliding window, whatever tokenrelay was configured with: 0 restores
// the default (Options.HalaxyRateLimit), negative means none. The headers
// say the true limit.
func (s *Sandbox) SetHalaxyRateLimit(clientID string, limit int) {
	if sw, ok := s.halaxy.limiter.(*slidingWindow); ok {
		sw.setLimit(clientID, limit)
	}
	s.log.Info().Str("client_id", clientID).Int("limit", limit).Msg("halaxy rate limit set")
}

// rateControlRoutes are the control endpoints of the rate windows (see the
// package doc).
func (s *Sandbox) rateControlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+ControlPath+"rate/{account}/record", func(w http.ResponseWriter, r *http.Request) {
		hits := s.RateRecord(r.PathValue("account"))
		if hits == nil {
			hits = []RateHit{}
		}
		writeJSON(w, http.StatusOK, "application/json", hits)
	})
	mux.HandleFunc("DELETE "+ControlPath+"rate/records", func(w http.ResponseWriter, r *http.Request) {
		s.ClearRateRecord()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT "+ControlPath+"rate/{account}/limit", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Limit int `json:"limit"`
		}
		if !decode(w, r, &in) {
			return
		}
		s.SetHalaxyRateLimit(r.PathValue("account"), in.Limit)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT "+ControlPath+"rate/{account}/throttle", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			RetryAfter string `json:"retry_after"`
		}
		if !decode(w, r, &in) {
			return
		}
		d, err := optionalDuration("retry_after", in.RetryAfter)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.Throttle(r.PathValue("account"), d)
		w.WriteHeader(http.StatusNoContent)
	})
}

// admitHalaxy applies an API's rate window to a request of clientID,
// writing Halaxy's headers (x-ratelimit-limit, x-ratelimit-remaining; on
// 429 retry-after in seconds and an OperationOutcome). It reports whether
// the request may be served.
func admitHalaxy(w http.ResponseWriter, l limiter, clientID string, now time.Time) bool {
	if l == nil {
		return true
	}
	q := l.take(clientID, now)
	if q.limit < 0 {
		return true
	}
	w.Header()["x-ratelimit-limit"] = []string{strconv.Itoa(q.limit)}
	w.Header()["x-ratelimit-remaining"] = []string{strconv.Itoa(q.remaining)}
	if !q.allowed {
		w.Header()["retry-after"] = []string{retryAfterSeconds(q.retryAfter)}
		writeOutcome(w, http.StatusTooManyRequests, "throttled", "rate limit exceeded")
		return false
	}
	return true
}
