package sandbox

import "time"

// tokenInfo is what the sandbox knows of an access token it issued.
type tokenInfo struct {
	clientID string
	api      string
	gen      uint64 // the client's generation when issued
	expires  time.Time
}

// tokenStore holds issued tokens and forgets them some time after they
// expire, so that thousands of tokens a second stay in bounded memory. It
// is not safe for concurrent use (the Sandbox's mutex guards it).
type tokenStore struct {
	m map[string]tokenInfo
	// order is the tokens in issue order, order[head:] still in m: purging
	// walks from the front, so its cost is spread over the issues.
	order []issuedToken
	head  int
}

type issuedToken struct {
	token   string
	expires time.Time
}

func (ts *tokenStore) add(tok string, info tokenInfo) {
	ts.m[tok] = info
	ts.order = append(ts.order, issuedToken{token: tok, expires: info.expires})
}

func (ts *tokenStore) get(tok string) (tokenInfo, bool) {
	info, ok := ts.m[tok]
	return info, ok
}

// purge forgets the tokens, oldest first, that expired more than retention
// before now. It stops at the first one still to keep: a token issued later
// with a shorter lifetime (the lifetime was lowered meanwhile) waits for
// those before it.
func (ts *tokenStore) purge(now time.Time, retention time.Duration) {
	cutoff := now.Add(-retention)
	for ts.head < len(ts.order) && ts.order[ts.head].expires.Before(cutoff) {
		delete(ts.m, ts.order[ts.head].token)
		ts.order[ts.head] = issuedToken{}
		ts.head++
	}
	if ts.head > 1024 && ts.head*2 > len(ts.order) {
		ts.order = append([]issuedToken(nil), ts.order[ts.head:]...)
		ts.head = 0
	}
}

func (ts *tokenStore) len() int { return len(ts.m) }
