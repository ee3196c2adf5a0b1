package config

import (
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
	"time"
	"unicode"
)

// idPattern is what vendor names and credential ids look like: they become
// NATS subject tokens, Redis key parts and URL path segments.
const idPattern = `[A-Za-z0-9_-]{1,64}`

var validID = regexp.MustCompile(`^` + idPattern + `$`)

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
	c.validateHTTP(p)
	c.validateHTTPTokens(p)
	c.validateScheduler(p)
	c.validateWorker(p)
	names := c.vendorNames()
	for _, name := range names {
		c.Vendors[name].validate(p, "vendors."+name, name)
	}
	c.validateCredentials(p, names)
	c.validateSyncs(p)
	c.validateSecretKey(p)
}

// vendorNames are the names of the vendor instances, sorted.
func (c *Config) vendorNames() []string {
	names := make([]string, 0, len(c.Vendors))
	for name := range c.Vendors {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (c *Config) validateHTTP(p *problems) {
	if !validAddr(c.HTTP.Addr) {
		p.add("http.addr", "%s must be host:port (e.g. 127.0.0.1:8080, or :0 for any free port)", p.show("http.addr", c.HTTP.Addr))
	}
	if m := c.HTTP.CredentialMetrics; m != CredentialMetricsPerCredential && m != CredentialMetricsPerVendor {
		p.add("http.credential_metrics", "%s is not a choice: use %s (the default) or %s", p.show("http.credential_metrics", m),
			CredentialMetricsPerCredential, CredentialMetricsPerVendor)
	}
}

func (c *Config) validateScheduler(p *problems) {
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
}

func (c *Config) validateWorker(p *problems) {
	if d := c.Worker.SpoolDir; d != "" && !filepath.IsAbs(d) {
		p.add("worker.spool_dir", "%s must be an absolute path", p.show("worker.spool_dir", d))
	}
}

func (c *Config) validateSecretKey(p *problems) {
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
	c.validateReplicaAcks(p)
}

// MaxReplicaAckTimeout is the longest redis.replica_ack_timeout: WAIT
// holds a Redis connection meanwhile, and the client gives up reading an
// answer after 3 s.
const MaxReplicaAckTimeout = Duration(2 * time.Second)

// validateReplicaAcks checks redis.min_replica_acks and
// redis.replica_ack_timeout: the wait for replicas comes out of the claim
// before the vendor is called, so it must leave the call its time.
func (c *Config) validateReplicaAcks(p *problems) {
	if c.Redis.MinReplicaAcks < 0 {
		p.add("redis.min_replica_acks", "must not be negative (replicas; 0, the default, waits for none; 1 behind Sentinel)")
	}
	t := c.Redis.ReplicaAckTimeout
	if t == 0 {
		t = DefaultReplicaAckTimeout
	}
	switch {
	case t < 0:
		p.add("redis.replica_ack_timeout", "must not be negative (e.g. 1s; 0 for the default 1s)")
	case c.Redis.MinReplicaAcks <= 0:
	case t > MaxReplicaAckTimeout:
		p.add("redis.replica_ack_timeout", "%s is longer than %s, after which the Redis client gives up on the answer: use e.g. 1s",
			time.Duration(t), time.Duration(MaxReplicaAckTimeout))
	case c.Scheduler.ClaimLease > 0 && t > c.Scheduler.ClaimLease/5:
		p.add("redis.replica_ack_timeout", "%s is more than a fifth of scheduler.claim_lease (%s): the wait comes out of the time a claim leaves for the vendor call; shorten it or lengthen the lease",
			time.Duration(t), time.Duration(c.Scheduler.ClaimLease))
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

// CheckCredential validates one credential added at run time (admin API,
// CLI import) against the configured vendors, with the same rules as the
// file's credentials. Problems name the field alone ("client_secret"), not
// a position in the file. Uniqueness of the id is the store's concern.
func (c *Config) CheckCredential(cr Credential) error {
	one := &Config{Vendors: c.Vendors, Credentials: []Credential{cr}}
	p := newProblems()
	one.validateCredentials(p, c.vendorNames())
	err := p.err()
	var ve *ValidationError
	if errors.As(err, &ve) {
		for i := range ve.Problems {
			ve.Problems[i].Path = strings.TrimPrefix(ve.Problems[i].Path, "credentials[0].")
		}
	}
	return err
}
