package config

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/tokenrelay/tokenrelay/secret"
)

// idPattern is what vendor names and credential ids look like: they become
// NATS subject tokens, Redis key parts and URL path segments.
const idPattern = `[A-Za-z0-9_-]{1,64}`

var (
	validID = regexp.MustCompile(`^` + idPattern + `$`)
	// userAgent is Halaxy's "APP_VENDOR_NAME (APP_VENDOR_EMAIL)".
	userAgent = regexp.MustCompile(`^[^()\s][^()\r\n]* \([^()\s@]+@[^()\s@]+\)$`)
)

// Validate checks a Config whose defaults are filled (Parse does both; a
// Config built in Go needs SetDefaults first), and returns a
// *ValidationError listing every problem, or nil.
func (c *Config) Validate() error {
	p := newProblems()
	c.validate(p)
	return p.err()
}

func (c *Config) validate(p *problems) {
	c.validateRedis(p)
	c.validateNATS(p)
	c.validateConnections(p)
	if !validAddr(c.HTTP.Addr) {
		p.add("http.addr", "%s must be host:port (e.g. 127.0.0.1:8080, or :0 for any free port)", p.show("http.addr", c.HTTP.Addr))
	}
	if m := c.HTTP.CredentialMetrics; m != CredentialMetricsPerCredential && m != CredentialMetricsPerVendor {
		p.add("http.credential_metrics", "%s is not a choice: use %s (the default) or %s", p.show("http.credential_metrics", m),
			CredentialMetricsPerCredential, CredentialMetricsPerVendor)
	}
	c.validateHTTPTokens(p)
	for _, d := range []struct {
		field string
		value Duration
	}{
		{"poll_interval", c.Scheduler.PollInterval},
		{"claim_lease", c.Scheduler.ClaimLease},
		{"rotation_hold", c.Scheduler.RotationHold},
		{"reconcile_every", c.Scheduler.ReconcileEvery},
	} {
		if d.value <= 0 {
			p.add("scheduler."+d.field, "must be more than 0 (e.g. 10s)")
		}
	}

	if d := c.Worker.SpoolDir; d != "" && !filepath.IsAbs(d) {
		p.add("worker.spool_dir", "%s must be an absolute path", p.show("worker.spool_dir", d))
	}

	names := make([]string, 0, len(c.Vendors))
	for name := range c.Vendors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c.Vendors[name].validate(p, "vendors."+name, name)
	}
	c.validateCredentials(p, names)
	c.validateSyncs(p)

	if n := len(c.SecretKey.Reveal()); n != SecretKeySize && c.KMS.Wrapped == nil {
		p.add(EnvSecretKey, "must hold %d bytes, not %d (generate one with: head -c 32 /dev/urandom | base64)", SecretKeySize, n)
	}
}

func (c *Config) validateRedis(p *problems) {
	const example = "e.g. redis://127.0.0.1:6379/0"
	checkURL(p, "redis.url", c.Redis.URL, []string{"redis", "rediss"}, example)
	if c.Redis.Prefix == "" {
		p.add("redis.prefix", `must not be empty (e.g. "tokenrelay:")`)
	}
}

func (c *Config) validateNATS(p *problems) {
	const example = "e.g. nats://127.0.0.1:4222"
	for u := range strings.SplitSeq(c.NATS.URL, ",") {
		checkURL(p, "nats.url", strings.TrimSpace(u), []string{"nats", "tls"}, example+", several separated by commas")
	}
	if s := c.NATS.Stream; s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(`.*>/\`, r)
	}) {
		p.add("nats.stream", "%s is not a JetStream stream name (no spaces or . * > / \\; e.g. TOKENRELAY)", p.show("nats.stream", s))
	}
	if c.NATS.SubjectPrefix != "" && !subjectTokens(strings.TrimSuffix(c.NATS.SubjectPrefix, ".")) {
		p.add("nats.subject_prefix", "%s is not a subject prefix (dot-separated tokens without spaces, * or >; e.g. staging.)", p.show("nats.subject_prefix", c.NATS.SubjectPrefix))
	}
	if body, ok := strings.CutSuffix(c.NATS.InboxPrefix, "."); !ok || !subjectTokens(body) {
		p.add("nats.inbox_prefix", "%s is not an inbox prefix (dot-separated tokens without spaces, * or >, ending with \".\"; e.g. _INBOX.)", p.show("nats.inbox_prefix", c.NATS.InboxPrefix))
	}
	if c.NATS.TokenCacheSize < 0 {
		p.add("nats.token_cache_size", "must not be negative (credentials; 0 for the default 100000)")
	}
	if c.NATS.TokenConcurrency < 0 {
		p.add("nats.token_concurrency", "must not be negative (requests at once; 0 for the default 64)")
	}
}

// subjectTokens reports whether s is one or more dot-separated NATS
// subject tokens, none empty, without spaces, control characters or
// wildcards.
func subjectTokens(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsFunc(tok, func(r rune) bool {
			return unicode.IsSpace(r) || !unicode.IsPrint(r) || r == '*' || r == '>'
		}) {
			return false
		}
	}
	return true
}

// checkURL reports a URL that does not parse, has no host or has a scheme
// not in schemes. It never repeats the URL, which may hold a password.
func checkURL(p *problems, path, raw string, schemes []string, example string) {
	want := strings.Join(schemes, ":// or ") + "://"
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		p.add(path, "must not be empty (%s)", example)
	case err != nil:
		p.add(path, "is not a valid URL (%s)", example)
	case !slices.Contains(schemes, u.Scheme) && p.fromEnv(path):
		p.add(path, "scheme must be %s (%s)", want, example)
	case !slices.Contains(schemes, u.Scheme):
		p.add(path, "scheme %q is not %s (%s)", u.Scheme, want, example)
	case u.Host == "":
		p.add(path, "has no host (%s)", example)
	}
}

// validAddr reports whether s is host:port with a numeric port.
func validAddr(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || strings.ContainsFunc(host, unicode.IsSpace) {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

func kindList() string {
	var kinds []string
	for _, k := range Kinds() {
		kinds = append(kinds, string(k))
	}
	return strings.Join(kinds, ", ")
}

func (v Vendor) validate(p *problems, path, name string) {
	if !validID.MatchString(name) {
		p.add(path, "vendor name %q must match %s", name, idPattern)
	}
	d, known := byKind[v.Kind]
	switch {
	case v.Kind == "":
		p.add(path+".kind", "required (one of %s)", kindList())
	case !known:
		p.add(path+".kind", "unknown kind %s (one of %s)", p.show(path+".kind", string(v.Kind)), kindList())
	}

	regionOK := true
	switch {
	case !known:
	case d.region == "" && v.Region != "":
		regionOK = false
		p.add(path+".region", "kind %s has no regions (remove it)", v.Kind)
	case d.region != "" && d.baseURLs[v.Region] == "":
		regionOK = false
		p.add(path+".region", "unknown region %s for kind %s (%s)", p.show(path+".region", v.Region), v.Kind, d.regionHint)
	}
	switch {
	case v.BaseURL != "" && !strings.HasSuffix(v.BaseURL, "/"):
		p.add(path+".base_url", `must end with "/" (SetDefaults adds it)`)
	case v.BaseURL != "":
		checkURL(p, path+".base_url", v.BaseURL, []string{"https", "http"}, "e.g. https://api.example.com/v1/")
	case known && regionOK:
		p.add(path+".base_url", "required for kind %s (the API root, e.g. https://api.example.com/v1/)", v.Kind)
	}
	switch {
	case v.TokenURL != "":
		checkURL(p, path+".token_url", v.TokenURL, []string{"https", "http"}, "e.g. https://auth.example.com/oauth/token")
	case v.Kind == KindOAuth2:
		p.add(path+".token_url", "required for kind oauth2 (the token endpoint, e.g. https://auth.example.com/oauth/token)")
	}
	for i, s := range v.Scopes {
		if s == "" || strings.ContainsFunc(s, unicode.IsSpace) {
			sp := fmt.Sprintf("%s.scopes[%d]", path, i)
			p.add(sp, "%s is not a scope (one per list item, without spaces)", p.show(sp, s))
		}
	}
	switch {
	case v.Kind == KindHalaxy && v.UserAgent == "":
		p.add(path+".user_agent", `required for kind halaxy, as "NAME (EMAIL)" (e.g. "Acme Sync (ops@acme.example)")`)
	case v.Kind == KindHalaxy && !userAgent.MatchString(v.UserAgent):
		p.add(path+".user_agent", `%s must look like "NAME (EMAIL)", as Halaxy asks (e.g. "Acme Sync (ops@acme.example)")`, p.show(path+".user_agent", v.UserAgent))
	case strings.ContainsFunc(v.UserAgent, unicode.IsControl):
		p.add(path+".user_agent", "must be one line of printable text")
	}
	if v.MaxTokenLifetime < 0 {
		p.add(path+".max_token_lifetime", "must not be negative (use 0 for no cap, or e.g. 15m)")
	}
	switch {
	case v.RotateEvery < 0:
		p.add(path+".rotate_every", "must not be negative (use 0 for never, or e.g. 90d)")
	case v.RotateEvery > 0 && known && !d.canRotate:
		p.add(path+".rotate_every", "kind %s cannot rotate keys (remove it; only healthsync and redox can)", v.Kind)
	}
	switch modes := modesByKind[v.Kind]; {
	case v.Mode == "" || !known:
	case modes == nil:
		p.add(path+".mode", "kind %s has no modes (remove it)", v.Kind)
	case !slices.Contains(modes, v.Mode):
		p.add(path+".mode", "unknown mode %s for kind %s (one of %s)", p.show(path+".mode", v.Mode), v.Kind, strings.Join(modes, ", "))
	case v.Kind == KindHealthSync && v.Mode != ModeAPIKey && v.RotateEvery > 0:
		p.add(path+".rotate_every", "only mode api_key rotates keys (remove it, or use mode api_key)")
	}
	if v.KeyPaths != (KeyPaths{}) {
		if known && v.Kind != KindHealthSync {
			p.add(path+".key_paths", "only kind healthsync has key-management paths (remove it)")
		} else if r := v.KeyPaths.Revoke; r != "" && !strings.Contains(r, "{id}") {
			p.add(path+".key_paths.revoke", `%s must hold "{id}", where the key's id goes (e.g. keys/{id})`, p.show(path+".key_paths.revoke", r))
		}
	}
	refreshAt := strconv.FormatFloat(v.RefreshAt, 'g', 4, 64)
	if !(v.RefreshAt > 0 && v.RefreshAt < 1) {
		p.add(path+".refresh_at", "%s must be between 0 and 1, both excluded (e.g. 0.6667 refreshes at two thirds of the lifetime)", refreshAt)
	} else if !(v.RefreshJitter >= 0 && v.RefreshJitter < v.RefreshAt) {
		p.add(path+".refresh_jitter", "%s must be at least 0 and less than refresh_at (%s); e.g. 0.1", strconv.FormatFloat(v.RefreshJitter, 'g', 4, 64), refreshAt)
	}

	rl := path + ".rate_limit"
	validateRate(p, rl, v.RateLimit.Limit, v.RateLimit.Per, "use 0 for no limit of ours", "1m or 1h", "requests per window, e.g. 500")
	if s := v.RateLimit.Slack; s < 0 || (s > 0 && v.RateLimit.Per > 0 && s >= v.RateLimit.Per/10) {
		p.add(rl+".slack", "must be at least 0 and under a tenth of rate_limit.per (the network delay to the vendor, e.g. 50ms)")
	}
	if w := v.RateLimit.Window; w != "" && w != "sliding" && w != "fixed" {
		p.add(rl+".window", "%q must be sliding or fixed (empty: fixed for healthsync, sliding for the others)", w)
	}

	wh := path + ".webhooks"
	switch {
	case !slices.Contains(verifies, v.Webhooks.Verify):
		names := make([]string, len(verifies))
		for i, m := range verifies {
			names[i] = string(m)
		}
		p.add(wh+".verify", "unknown method %s (one of %s)", p.show(wh+".verify", string(v.Webhooks.Verify)), strings.Join(names, ", "))
	case v.Webhooks.Verify == VerifyNone && (!v.Webhooks.Secret.IsZero() || len(v.Webhooks.PreviousSecrets) > 0):
		p.add(wh+".verify", "is none, but a secret is set (set verify to token, hmac-sha256 or standard-webhooks, or remove the secret)")
	case v.Webhooks.Verify != VerifyNone && v.Webhooks.Secret.IsZero():
		p.add(wh+".secret", "%s", required(p, wh+".secret", "when verify is "+string(v.Webhooks.Verify)))
	case v.Webhooks.Verify != VerifyNone && v.Webhooks.AcceptUnverified:
		p.add(wh+".accept_unverified", "only applies to verify: none (remove it: verify %s checks every delivery)", v.Webhooks.Verify)
	}
	for i, s := range v.Webhooks.PreviousSecrets {
		if s.IsZero() {
			f := fmt.Sprintf("%s.previous_secrets[%d]", wh, i)
			p.add(f, "%s", required(p, f, "(remove the empty entry)"))
		}
	}
	if h := v.Webhooks.Header; h != "" && !validHeaderName(h) {
		p.add(wh+".header", "%s is not an HTTP header name (e.g. X-Signature)", p.show(wh+".header", h))
	}
	if v.Webhooks.MaxBody < 0 {
		p.add(wh+".max_body", "must not be negative (bytes; 0 for the default 1048576)")
	}
	for _, d := range []struct {
		field string
		value Duration
	}{
		{"tolerance", v.Webhooks.Tolerance},
		{"dedup_window", v.Webhooks.DedupWindow},
		{"polling.interval", v.Webhooks.Polling.Interval},
		{"polling.silent_after", v.Webhooks.Polling.SilentAfter},
	} {
		if d.value < 0 {
			p.add(wh+"."+d.field, "must not be negative (0 for the default)")
		}
	}
	if c := v.Webhooks.FetchCredential; c != "" && !validID.MatchString(c) {
		p.add(wh+".fetch_credential", "%s must be a credential id (%s)", p.show(wh+".fetch_credential", c), idPattern)
	}
	for i, r := range v.Webhooks.Polling.Resources {
		if !validID.MatchString(r) {
			f := fmt.Sprintf("%s.polling.resources[%d]", wh, i)
			p.add(f, "%s is not a resource type (%s, e.g. Patient)", p.show(f, r), idPattern)
		}
	}
	if len(v.Webhooks.Polling.Resources) > 0 && v.Webhooks.FetchCredential == "" {
		p.add(wh+".fetch_credential", "required with polling.resources (the credential whose token polls)")
	}
	validateWebhookBounds(p, wh, v.Webhooks)
}

// validateRate checks a {limit, per} pair at field: neither negative, and
// both set or neither. It reports whether the pair is valid.
func validateRate(p *problems, field string, limit int, per Duration, zeroLimit, perExample, limitExample string) bool {
	name := field[strings.LastIndex(field, ".")+1:]
	switch {
	case limit < 0:
		p.add(field+".limit", "must not be negative (%s)", zeroLimit)
	case per < 0:
		p.add(field+".per", "must not be negative (e.g. 1m)")
	case limit > 0 && per == 0:
		p.add(field+".per", "required when %s.limit is set (the window, e.g. %s)", name, perExample)
	case limit == 0 && per > 0:
		p.add(field+".limit", "required when %s.per is set (%s)", name, limitExample)
	default:
		return true
	}
	return false
}

// validateWebhookBounds checks the bounds on what one webhook may cost:
// the fetches it triggers, and how long a signed id is remembered against
// a replay within the timestamp tolerance.
func validateWebhookBounds(p *problems, wh string, w Webhooks) {
	if w.MaxFetchesPerDelivery < 0 {
		p.add(wh+".max_fetches_per_delivery", "must not be negative (0 for the default %d)", DefaultWebhookMaxFetchesPerDelivery)
	}
	if w.MaxCatchUp < 0 {
		p.add(wh+".max_catch_up", "must not be negative (0 for the default %d)", DefaultWebhookMaxCatchUp)
	}
	rateOK := validateRate(p, wh+".fetch_rate", w.FetchRate.Limit, w.FetchRate.Per, "0 for the default", "1m", "fetches per window, e.g. 60")
	if rateOK && w.FetchRate.Limit > 0 && w.MaxFetchesPerDelivery > w.FetchRate.Limit {
		p.add(wh+".max_fetches_per_delivery", "must not exceed fetch_rate.limit (%d): such a notification could never be fetched", w.FetchRate.Limit)
	}
	if w.Verify == VerifyStandardWebhooks {
		tol, dedup := w.Tolerance, w.DedupWindow
		if tol <= 0 {
			tol = DefaultWebhookTolerance
		}
		if dedup <= 0 {
			dedup = DefaultWebhookDedupWindow
		}
		if dedup < 2*tol {
			p.add(wh+".dedup_window", "must be at least twice tolerance (%s): a signed delivery is accepted for that long, and must be recognised while it is", 2*tol)
		}
	}
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	for _, r := range s {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("!#$%&'*+-.^_`|~", r))) {
			return false
		}
	}
	return s != ""
}

// required says that a field is missing, naming the environment variable
// when the field is set from one that is empty.
func required(p *problems, path, why string) string {
	if refs := p.refs[path]; len(refs) > 0 {
		return fmt.Sprintf("environment variable %s is empty; the field is required %s", strings.Join(refs, ", "), why)
	}
	return "required " + why
}

// credentialFields is which credential fields a kind needs.
type credentialFields struct {
	clientID, clientSecret, privateKey, keyID, apiKey, refreshToken use
}

type use int

const (
	unused use = iota
	needed
	optional
)

var credentialsByKind = map[Kind]credentialFields{
	KindHalaxy:      {clientID: needed, clientSecret: needed},
	KindRedox:       {clientID: needed, keyID: needed, clientSecret: optional, privateKey: optional},
	KindRedoxLegacy: {clientID: needed, clientSecret: needed},
	KindHealthSync:  {apiKey: needed},
	KindFHIRPortal:  {clientID: needed, clientSecret: needed},
	KindOAuth2:      {clientID: needed, clientSecret: needed},
}

func (c *Config) validateCredentials(p *problems, vendorNames []string) {
	firstUse := map[string]int{}
	for i, cr := range c.Credentials {
		path := fmt.Sprintf("credentials[%d]", i)
		switch first, dup := firstUse[cr.ID]; {
		case !validID.MatchString(cr.ID):
			p.add(path+".id", "%s must match %s", p.show(path+".id", cr.ID), idPattern)
		case dup:
			p.add(path+".id", "%s is also the id of credentials[%d] (ids must be unique)", p.show(path+".id", cr.ID), first)
		default:
			firstUse[cr.ID] = i
		}

		v, ok := c.Vendors[cr.Vendor]
		if !ok {
			defined := "none are"
			if len(vendorNames) > 0 {
				defined = "defined: " + strings.Join(vendorNames, ", ")
			}
			if cr.Vendor == "" {
				p.add(path+".vendor", "required: the name of an entry under vendors (%s)", defined)
			} else {
				p.add(path+".vendor", "vendor %s is not defined under vendors (%s)", p.show(path+".vendor", cr.Vendor), defined)
			}
			continue
		}
		want, ok := credentialsByKind[v.Kind]
		if !ok {
			continue // the vendor's kind is reported already
		}
		why := fmt.Sprintf("for kind %s (vendor %s)", v.Kind, cr.Vendor)
		if v.Kind == KindHealthSync && v.Mode != "" && v.Mode != ModeAPIKey {
			// A user's delegation (oauth; a public client has no secret) or
			// a service account: client credentials, no API key.
			want = credentialFields{clientID: needed, clientSecret: needed}
			if v.Mode == ModeOAuth {
				want.clientSecret = optional
				want.refreshToken = needed
			}
			why = fmt.Sprintf("for kind %s in mode %s (vendor %s)", v.Kind, v.Mode, cr.Vendor)
		}
		check := func(field string, u use, set bool) {
			switch {
			case u == needed && !set:
				p.add(path+"."+field, "%s", required(p, path+"."+field, why))
			case u == unused && set:
				p.add(path+"."+field, "not used %s; remove it", why)
			}
		}
		check("client_id", want.clientID, cr.ClientID != "")
		check("client_secret", want.clientSecret, !cr.ClientSecret.IsZero())
		check("private_key", want.privateKey, !cr.PrivateKey.IsZero())
		check("key_id", want.keyID, cr.KeyID != "")
		check("api_key", want.apiKey, !cr.APIKey.IsZero())
		check("refresh_token", want.refreshToken, !cr.RefreshToken.IsZero())
		if v.Kind == KindRedox {
			switch {
			case cr.ClientSecret.IsZero() && cr.PrivateKey.IsZero():
				p.add(path+".private_key", "%s", required(p, path+".private_key", why+", or client_secret for HS384"))
			case !cr.ClientSecret.IsZero() && !cr.PrivateKey.IsZero():
				p.add(path+".client_secret", "set together with private_key (keep one: private_key for RS384/ES384, client_secret for HS384)")
			}
		}
		if !cr.PrivateKey.IsZero() && !isPrivateKeyPEM(cr.PrivateKey) {
			p.add(path+".private_key", "is not a PEM private key (expected a -----BEGIN … PRIVATE KEY----- block)")
		}
	}
}

func isPrivateKeyPEM(v secret.Value) bool {
	block, _ := pem.Decode([]byte(v.Reveal()))
	return block != nil && strings.HasSuffix(block.Type, "PRIVATE KEY")
}

// CheckCredential validates one credential added at run time (admin API,
// CLI import) against the configured vendors, with the same rules as the
// file's credentials. Problems name the field alone ("client_secret"), not
// a position in the file. Uniqueness of the id is the store's concern.
func (c *Config) CheckCredential(cr Credential) error {
	one := &Config{Vendors: c.Vendors, Credentials: []Credential{cr}}
	p := newProblems()
	names := make([]string, 0, len(c.Vendors))
	for n := range c.Vendors {
		names = append(names, n)
	}
	sort.Strings(names)
	one.validateCredentials(p, names)
	err := p.err()
	var ve *ValidationError
	if errors.As(err, &ve) {
		for i := range ve.Problems {
			ve.Problems[i].Path = strings.TrimPrefix(ve.Problems[i].Path, "credentials[0].")
		}
	}
	return err
}
