package store

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Fields of a credential hash. The Lua scripts in lua/ spell the same names.
// Optional fields are absent rather than empty, which keeps the hash small:
// an absent field reads as "", 0 or the zero time.
const (
	fVendor       = "vendor"
	fClientID     = "client_id"
	fClientSecret = "client_secret" // sealed
	fSecretFP     = "secret_fp"     // secret.Fingerprint of the client secret, to tell an unchanged upsert
	fState        = "state"
	fPrevState    = "prev_state" // the state before the current claim
	fGen          = "gen"
	fAccessToken  = "access_token" // sealed
	fTokenType    = "token_type"
	fIssuedAt     = "issued_at"     // unix ms
	fExpiresAt    = "expires_at"    // unix ms
	fRefreshToken = "refresh_token" // sealed
	fNextRefresh  = "next_refresh"  // unix ms, absent when not scheduled (revoked)
	fFailures     = "failures"
	fLastClass    = "last_class"
	fLastError    = "last_error"
	fClaimOwner   = "claim_owner"
	fClaimUntil   = "claim_until" // unix ms
	fCreatedAt    = "created_at"  // unix ms
	fUpdatedAt    = "updated_at"  // unix ms
	// fTrace is the W3C traceparent of the renewal that committed the
	// token, when tracing sampled it (absent otherwise): token.get hands
	// it out with the token.
	fTrace = "trace"
)

// tokenFields are what CurrentToken reads: no client secret, no refresh
// token, so that the hot path opens one sealed value.
var tokenFields = []string{
	fVendor, fClientID, fState, fGen, fAccessToken, fTokenType, fIssuedAt, fExpiresAt,
	fNextRefresh, fFailures, fLastClass, fLastError, fCreatedAt, fUpdatedAt, fTrace,
}

// summaryFields are what Scan reads: nothing sealed.
var summaryFields = []string{
	fVendor, fClientID, fState, fGen, fIssuedAt, fExpiresAt, fNextRefresh,
	fFailures, fLastClass, fLastError, fUpdatedAt,
}

// fields is a credential hash as read from Redis; a missing field is "".
type fields map[string]string

// fieldsFromPairs builds fields from a flat field, value, ... list (HGETALL).
func fieldsFromPairs(pairs []any) fields {
	f := make(fields, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		k, _ := pairs[i].(string)
		v, _ := pairs[i+1].(string)
		f[k] = v
	}
	return f
}

// fieldsFromValues builds fields from the answer of HMGET names...
func fieldsFromValues(names []string, vals []any) fields {
	f := make(fields, len(names))
	for i, name := range names {
		if i < len(vals) {
			if v, ok := vals[i].(string); ok {
				f[name] = v
			}
		}
	}
	return f
}

// exists reports whether the hash was there: every credential has a state.
func (f fields) exists() bool { return f[fState] != "" }

// int reads an integer field; absent is 0. The error names the field and
// not its value.
func (f fields) int(name string) (int64, error) { return parseInt(name, f[name]) }

// time reads a unix-ms field; absent is the zero time.
func (f fields) time(name string) (time.Time, error) { return parseTime(name, f[name]) }

// parseInt reads the value s of the integer field name; "" is 0. The error
// names the field and not its value.
func parseInt(name, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("field %s is not an integer", name)
	}
	return n, nil
}

// parseTime reads the value s of the unix-ms field name; "" is the zero
// time.
func parseTime(name, s string) (time.Time, error) {
	n, err := parseInt(name, s)
	if err != nil || n == 0 {
		return time.Time{}, err
	}
	return time.UnixMilli(n).UTC(), nil
}

// summary decodes everything that is not sealed.
func (f fields) summary(id string) (Summary, error) {
	sum := Summary{
		ID:        id,
		Vendor:    f[fVendor],
		State:     State(f[fState]),
		LastClass: f[fLastClass],
		LastError: f[fLastError],
	}
	if c := f[fClientID]; c != "" {
		sum.ClientIDFingerprint = secret.Fingerprint(c)
	}
	var err error
	var failures int64
	for _, d := range []struct {
		name string
		t    *time.Time
		n    *int64
	}{
		{name: fGen, n: &sum.Generation},
		{name: fFailures, n: &failures},
		{name: fIssuedAt, t: &sum.IssuedAt},
		{name: fExpiresAt, t: &sum.ExpiresAt},
		{name: fNextRefresh, t: &sum.NextRefresh},
		{name: fUpdatedAt, t: &sum.UpdatedAt},
	} {
		if d.n != nil {
			*d.n, err = f.int(d.name)
		} else {
			*d.t, err = f.time(d.name)
		}
		if err != nil {
			return Summary{}, err
		}
	}
	sum.Failures = int(failures)
	return sum, nil
}

// credential decodes everything that is not sealed; the caller opens the
// secrets it needs.
func (f fields) credential(id string) (Credential, error) {
	sum, err := f.summary(id)
	if err != nil {
		return Credential{}, err
	}
	created, err := f.time(fCreatedAt)
	if err != nil {
		return Credential{}, err
	}
	return Credential{
		ID:               id,
		Vendor:           sum.Vendor,
		ClientID:         f[fClientID],
		State:            sum.State,
		StateBeforeClaim: State(f[fPrevState]),
		Generation:       sum.Generation,
		Token: Token{
			TokenType: f[fTokenType],
			IssuedAt:  sum.IssuedAt,
			ExpiresAt: sum.ExpiresAt,
		},
		NextRefresh:  sum.NextRefresh,
		Failures:     sum.Failures,
		LastClass:    sum.LastClass,
		LastError:    sum.LastError,
		CreatedAt:    created,
		UpdatedAt:    sum.UpdatedAt,
		RenewalTrace: f[fTrace],
	}, nil
}

// ms is a time as stored: unix milliseconds, "" for the zero time.
func ms(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}
