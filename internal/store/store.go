// Package store keeps credentials in Redis: their secrets and current tokens
// encrypted at rest (AES-256-GCM through package seal, key id recorded), a
// generation number per credential that fences renewals, a state, and an
// index by next refresh time so that finding what is due costs O(due).
//
// Every state change that has an event writes the event to the outbox
// (events.OutboxKey) in the same atomic step (a Lua script), so a change is
// never visible without its event nor an event without its change.
//
// Redis layout, under a prefix P (default "tokenrelay:"):
//
//	P cred:<id>   hash   one credential (secret fields sealed)
//	P creds       set    every credential id
//	P due         zset   id -> next refresh time (unix ms); revoked ones absent
//	P outbox      stream events waiting for the relay (owned by package events)
//	P reseal:lease string  the process re-sealing under a new master key (reseal.go)
//	P reseal:done  string  the key id of the last re-seal that left nothing old
//
// Times are unix milliseconds, taken from the store's clock (never Redis
// TIME). The hash fields are listed in fields.go and the scripts in lua/.
// On Redis Cluster, give a prefix with a hash tag ("{tokenrelay}:") so that
// all of these keys share one slot, as the scripts need.
//
// Behind Sentinel or on a Cluster with replicas, Options.Replication makes
// the writes that fence vendor calls (claims, the commit of an issued
// token, the steps of a key rotation) wait for replicas with WAIT, so that
// a failover cannot lose a claim a worker has acted on (replicas.go).
package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// State is a credential's state.
type State string

// The states a credential can be in.
const (
	StateActive     State = "active"     // has a valid token, next refresh scheduled
	StateRefreshing State = "refreshing" // a worker holds the claim and is calling the vendor
	StateFailing    State = "failing"    // last refresh failed transiently; retrying while the token is valid
	StateExpired    State = "expired"    // the token expired before a refresh succeeded; retrying
	StateRevoked    State = "revoked"    // the vendor refused the credential for good; not scheduled
)

// Errors.
var (
	// ErrNotFound: no credential with that id.
	ErrNotFound = errors.New("store: credential not found")
	// ErrStale: the generation moved on, the credential is revoked, or the
	// caller's claim was taken over; the caller's work is a no-op.
	ErrStale = errors.New("store: stale generation or claim")
)

// BusyError says another worker holds the refresh claim until Until.
type BusyError struct{ Until time.Time }

func (e *BusyError) Error() string {
	return fmt.Sprintf("store: credential is being refreshed (claim held until %s)", e.Until.Format(time.RFC3339Nano))
}

// NewCredential is a credential to add.
type NewCredential struct {
	ID       string
	Vendor   string
	ClientID string
	Keys
}

// Keys is the key material a vendor issued for a credential, besides its
// client id. Which fields a kind uses: halaxy, oauth2, fhir-portal and
// redox-legacy a client secret; redox a private key (or an HS384 client
// secret) and its key id; healthsync an API key. It is sealed at rest as one
// value.
type Keys struct {
	ClientSecret secret.Value
	// PrivateKey is a PEM private key signing client assertions (redox).
	PrivateKey secret.Value
	// KeyID is the kid of PrivateKey (not a secret, sealed with it anyway).
	KeyID string
	// APIKey is a static API key (healthsync).
	APIKey secret.Value
	// RefreshToken is the refresh token a user's delegation was granted
	// with (healthsync oauth): the first renewal redeems it; after that the
	// token's own refresh token, when the vendor rotates it, comes first.
	RefreshToken secret.Value
}

// Token is a credential's current token.
type Token struct {
	AccessToken  secret.Value
	TokenType    string
	IssuedAt     time.Time
	ExpiresAt    time.Time // effective expiry (capped by max_token_lifetime)
	RefreshToken secret.Value
}

// Credential is everything the store knows about one credential.
type Credential struct {
	ID       string
	Vendor   string
	ClientID string
	Keys
	State State
	// StateBeforeClaim is, on a credential returned by Claim, the state it
	// was in before the claim made it refreshing.
	StateBeforeClaim State
	// Generation counts successful renewals: 0 before the first token.
	Generation  int64
	Token       Token // zero before the first renewal
	NextRefresh time.Time
	// Failures counts consecutive failed refreshes (0 after a success).
	Failures  int
	LastClass string // error class of the last failure, "" if none
	LastError string // secret-free message of the last failure
	CreatedAt time.Time
	UpdatedAt time.Time
	// RenewalTrace is the W3C traceparent of the renewal that committed the
	// current token (its store.commit span), kept only when tracing sampled
	// that renewal, so that whoever receives the token can link to the
	// trace that produced it; "" otherwise. Read by CurrentToken.
	RenewalTrace string
}

// Summary is a credential without its secrets, for views and listings.
type Summary struct {
	ID                  string
	Vendor              string
	ClientIDFingerprint string
	State               State
	Generation          int64
	IssuedAt            time.Time
	ExpiresAt           time.Time
	NextRefresh         time.Time // zero when not scheduled (revoked)
	Failures            int
	LastClass           string
	LastError           string
	UpdatedAt           time.Time
}

// Due is a credential whose refresh is due, with the generation to renew.
type Due struct {
	ID         string
	Generation int64
}

// Renewal is what a successful refresh commits.
type Renewal struct {
	Token       Token
	NextRefresh time.Time
}

// Failure is what a failed refresh commits.
type Failure struct {
	// State after the failure: StateFailing, StateExpired or StateRevoked.
	State   State
	Class   string
	Message string
	// RetryAt is when to try again; ignored for StateRevoked (unscheduled).
	RetryAt time.Time
}

// UpsertResult says what Upsert did.
type UpsertResult string

// Upsert results.
const (
	Created   UpsertResult = "created"
	Updated   UpsertResult = "updated" // vendor, client id or secret changed
	Unchanged UpsertResult = "unchanged"
)
