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
	forget(ts.m, &ts.order, &ts.head, now.Add(-retention))
}

// forget deletes from m the tokens of (*order)[*head:], the tokens of m in
// issue order, that expired before cutoff, oldest first, stopping at the
// first one to keep; it compacts order once most of it is forgotten.
func forget[V any](m map[string]V, order *[]issuedToken, head *int, cutoff time.Time) {
	o, h := *order, *head
	for h < len(o) && o[h].expires.Before(cutoff) {
		delete(m, o[h].token)
		o[h] = issuedToken{}
		h++
	}
	if h > 1024 && h*2 > len(o) {
		o = append([]issuedToken(nil), o[h:]...)
		h = 0
	}
	*order, *head = o, h
}

func (ts *tokenStore) len() int { return len(ts.m) }
