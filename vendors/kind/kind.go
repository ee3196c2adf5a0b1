// Package kind is the one description of each vendor kind: how to build
// its adapter, and every rule tokenrelay applies differently by kind (its
// regions and base URLs, its modes, its User-Agent rule, which credential
// fields it needs, whether and how its keys rotate, how its rate budget
// counts, its media type, its webhook handshake). The configuration
// validates with these rules and the rest of tokenrelay reads them, so
// that nothing outside vendors/ and config/ switches on a kind.
//
// Adding a kind means adding its adapter (a subpackage of vendors), its
// twin in vendors/sandbox, and one entry in specs.
package kind

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
)

// Spec describes one vendor kind.
type Spec struct {
	// Name is the kind as the configuration spells it, e.g. "halaxy". A
	// kind, once shipped, is never renamed.
	Name string

	// Regions maps each region to the base URL it implies; DefaultRegion
	// is the region of a vendor that names none ("" for a kind that has
	// one base URL and no regions to choose). No Regions: base_url is
	// required. RegionHint explains the regions in error messages.
	Regions       map[string]string
	DefaultRegion string
	RegionHint    string
	// RequiresTokenURL: the kind has no token endpoint of its own, so
	// token_url is required.
	RequiresTokenURL bool
	// HasKeyPaths: the kind takes key_paths (key-management paths).
	HasKeyPaths bool
	// Modes are the ways its credentials get in, default first; none for a
	// kind with a single way.
	Modes []string
	// UserAgent is what the kind asks of user_agent.
	UserAgent UserAgentRule
	// Credentials are the credential fields of the default mode;
	// ModeCredentials those of other modes that differ from it.
	Credentials     Credentials
	ModeCredentials map[string]Credentials

	// MaxTokenLifetime is the default max_token_lifetime (0: no cap).
	MaxTokenLifetime time.Duration
	// RateLimit is the default rate_limit (zero: none of ours).
	RateLimit Rate
	// FixedWindow: the vendor counts its rate limit in fixed windows (the
	// default rate_limit.window is then fixed, else sliding).
	FixedWindow bool
	// BudgetPerClient: the vendor limits each OAuth client, so the rate
	// budget is each credential's, not the vendor instance's.
	BudgetPerClient bool
	// MediaType is what its API takes and gives ("" : application/json).
	MediaType string
	// SinceParam is the search parameter an incremental sync asks for
	// what changed after an instant with, written without a prefix ("":
	// FHIR's _lastUpdated=gt<instant>). See Since.
	SinceParam string

	// Rotation is how its keys are rotated (NoRotation: they cannot be),
	// in RotatingModes only (none listed: in every mode). RotateEvery is
	// the default rotate_every of a vendor that rotates.
	Rotation      Rotation
	RotatingModes []string
	RotateEvery   time.Duration
	// APIKeyLifetime is how long a verified API key counts as a token
	// (RotateAPIKeys: the key is the token, checked this often).
	APIKeyLifetime time.Duration

	// WebhookTokenHeader is the default header of webhooks verified by
	// token ("": Authorization). WebhookHandshake: the vendor checks the
	// webhook endpoint with a handshake carrying that token.
	WebhookTokenHeader string
	WebhookHandshake   bool

	// New builds the adapter from a vendor instance's options. It does no
	// I/O: the configuration calls it to check a vendor with the adapter's
	// own rules.
	New func(Options) (vendors.TokenSource, error)
}

// Rate is a default {limit, per} rate limit.
type Rate struct {
	Limit int
	Per   time.Duration
}

// Rotation is a way of rotating a credential's key.
type Rotation int

const (
	// NoRotation: the key cannot be rotated through the vendor's API.
	NoRotation Rotation = iota
	// RotateAPIKeys: the adapter creates, verifies and revokes API keys
	// through the vendor's key management (package healthsync).
	RotateAPIKeys
	// RotateSigningKeys: a new signing key is published in the worker's
	// JWKS, which the vendor fetches (package redox).
	RotateSigningKeys
)

// UserAgentRule is what a kind asks of user_agent.
type UserAgentRule struct {
	// Required: user_agent must be set.
	Required bool
	// Valid, when set, is the adapter's own check of its shape; Shape
	// names that shape (e.g. `"NAME (EMAIL)"`), Example shows one, and
	// Why says who asks for it.
	Valid   func(string) bool
	Shape   string
	Example string
	Why     string
}

// Use says whether a credential field is needed.
type Use int

const (
	Unused Use = iota
	Needed
	Optional
)

// Credentials says which credential fields a kind needs.
type Credentials struct {
	ClientID, ClientSecret, PrivateKey, KeyID, APIKey, RefreshToken Use
	// KeyOrSecret: exactly one of private_key and client_secret.
	KeyOrSecret bool
}

// Options are what an adapter is built from: the vendor instance's
// configuration. Each adapter reads the fields it has.
type Options struct {
	// VendorName names the vendor instance in errors.
	VendorName string
	BaseURL    string
	TokenURL   string
	Scopes     []string
	UserAgent  string
	Mode       string
	// KeyPaths are the key-management paths (HasKeyPaths).
	KeyPaths healthsync.KeyPaths
	// HTTPClient sends the requests; nil: the adapter's default.
	HTTPClient *http.Client
}

// Lookup returns the Spec of the kind named name.
func Lookup(name string) (Spec, bool) {
	for _, s := range specs {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// All returns every Spec, in the order error messages list kinds.
func All() []Spec { return slices.Clone(specs) }

// Names returns every kind's name, in the order of All.
func Names() []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// RotatesIn returns how the keys of a vendor of this kind in mode are
// rotated ("" is the default mode).
func (s Spec) RotatesIn(mode string) Rotation {
	if mode == "" && len(s.Modes) > 0 {
		mode = s.Modes[0]
	}
	if len(s.RotatingModes) > 0 && !slices.Contains(s.RotatingModes, mode) {
		return NoRotation
	}
	return s.Rotation
}

// Since is the search parameter asking the kind's API for what changed
// after t, and its value: FHIR's _lastUpdated=gt<instant>, or the kind's
// SinceParam=<instant> (RFC 3339, UTC, to the nanosecond).
func (s Spec) Since(t time.Time) (name, value string) {
	at := t.UTC().Format(time.RFC3339Nano)
	if s.SinceParam != "" {
		return s.SinceParam, at
	}
	return "_lastUpdated", "gt" + at
}

// CredentialsIn returns the credential fields of mode, and whether they
// differ from the default mode's.
func (s Spec) CredentialsIn(mode string) (Credentials, bool) {
	if c, ok := s.ModeCredentials[mode]; ok {
		return c, true
	}
	return s.Credentials, false
}

// RotatingKinds describes the kinds that can rotate keys, e.g.
// "healthsync and redox", in alphabetical order.
func RotatingKinds() string {
	var names []string
	for _, s := range specs {
		if s.Rotation != NoRotation {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
