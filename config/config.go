package config

import (
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/fhirportal"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
	"github.com/tokenrelay/tokenrelay/vendors/oauth2cc"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
)

// Config is the whole configuration of the scheduler and the worker. Build
// one with Load or Parse; a Config built in Go gets its defaults from
// SetDefaults and is checked by Validate.
type Config struct {
	// Redis is where jobs, shared state and the event outbox live.
	Redis Redis `yaml:"redis"`
	// NATS is where events are published and tokens are requested.
	NATS NATS `yaml:"nats"`
	// HTTP is the worker's HTTP server (webhooks, health, metrics, admin).
	HTTP HTTP `yaml:"http"`
	// Scheduler paces the scheduler's loops.
	Scheduler Scheduler `yaml:"scheduler"`
	// Worker tunes the worker role.
	Worker Worker `yaml:"worker"`
	// Vendors are the named vendor instances credentials belong to; a kind
	// may appear several times (e.g. halaxy-au and halaxy-eu). Default: none.
	Vendors map[string]Vendor `yaml:"vendors"`
	// Credentials are the static credentials; more are added at run time.
	// Default: none.
	Credentials []Credential `yaml:"credentials"`
	// Syncs are the limits of syncs and the syncs started on a schedule.
	Syncs Syncs `yaml:"syncs"`
	// SecretKey is the 32-byte master key (raw bytes, not base64) that seals
	// secrets at rest. It is only ever read from TOKENRELAY_SECRET_KEY
	// (base64) and is required; there is no default.
	SecretKey secret.Value `yaml:"-"`
	// SecretKeysPrevious are earlier master keys (raw bytes), kept to open
	// what they sealed until the re-seal has sealed it again under the
	// current key. Only read from TOKENRELAY_SECRET_KEYS_PREVIOUS (base64,
	// separated by commas). Default: none.
	SecretKeysPrevious []secret.Value `yaml:"-"`
	// KMS, when set, wraps the master keys: SecretKey is then empty until
	// the process unwraps KMS.Wrapped at start (package masterkey). Only
	// read from the environment. Default: none.
	KMS KMS `yaml:"-"`
}

// Redis locates the Redis server.
type Redis struct {
	// URL is a redis:// or rediss:// URL, overridden by REDIS_URL; or a
	// redis+sentinel:// or redis+cluster:// URL, which Parse turns into a
	// redis:// URL and the Sentinel or Cluster fields (see the package doc).
	// Default: redis://127.0.0.1:6379/0. It may hold a password, so it is
	// never repeated in an error message; do not log it either.
	URL string `yaml:"url"`
	// Prefix starts every key tokenrelay writes. Default: "tokenrelay:".
	Prefix string `yaml:"prefix"`
	// Sentinel, when its master is set, connects through Redis Sentinel:
	// the URL then gives only the scheme (rediss:// for TLS), the username,
	// password and DB of the master; its host is not used. Default: off.
	Sentinel RedisSentinel `yaml:"sentinel"`
	// Cluster, when it lists nodes, connects to a Redis Cluster: the URL
	// then gives the scheme, username and password (DB must be 0); its host
	// is not used. Give Prefix a hash tag ("{tokenrelay}:"). Default: off.
	Cluster RedisCluster `yaml:"cluster"`
	// TLS adds a CA and a client certificate to a rediss:// connection
	// (rediss:// alone uses the system's roots). Default: none.
	TLS TLS `yaml:"tls"`
	// MinReplicaAcks is how many replicas must acknowledge the writes that
	// fence vendor calls (a renewal's claim before the token call, the
	// commit of the token it got, the steps of a key rotation) before a
	// worker acts on them: Redis replicates asynchronously, and a claim
	// the master acknowledged but a failover lost would let a second
	// worker call the vendor for the same renewal. A write too few
	// replicas acknowledge within ReplicaAckTimeout is not acted on (the
	// vendor is not called; the renewal is tried again once the claim's
	// lease ends). Set it to 1 behind Sentinel or on a Redis Cluster with
	// replicas; it costs a replica round trip per claim and commit, and no
	// renewal goes through while fewer replicas are up. Default 0: no wait
	// (a standalone Redis, which has no replica).
	MinReplicaAcks int `yaml:"min_replica_acks"`
	// ReplicaAckTimeout bounds the wait for MinReplicaAcks replicas; at
	// most 2s and a fifth of scheduler.claim_lease. Default: 1s.
	ReplicaAckTimeout Duration `yaml:"replica_ack_timeout"`
}

// RedisSentinel locates a Redis master through Sentinel.
type RedisSentinel struct {
	// Master is the master's name as the sentinels know it (e.g. mymaster).
	Master string `yaml:"master"`
	// Addrs are the sentinels' host:port. Required with Master.
	Addrs []string `yaml:"addrs"`
	// Username and Password authenticate to the sentinels themselves, when
	// they require it. Default: none.
	Username string       `yaml:"username"`
	Password secret.Value `yaml:"password"`
}

// RedisCluster lists the seed nodes of a Redis Cluster.
type RedisCluster struct {
	// Addrs are host:port of some of the cluster's nodes; the rest are
	// discovered.
	Addrs []string `yaml:"addrs"`
}

// TLS is the client side of a TLS connection. Files are read at start.
type TLS struct {
	// CAFile is a PEM bundle of the CAs to trust. Default: the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that require one (mutual TLS). Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	// Default: the host being dialled.
	ServerName string `yaml:"server_name"`
}

// IsZero reports whether nothing is set.
func (t TLS) IsZero() bool { return t == TLS{} }

// NATS locates the NATS server and names the JetStream stream.
type NATS struct {
	// URL is a nats:// or tls:// URL, or several separated by commas,
	// overridden by NATS_URL. Default: nats://127.0.0.1:4222.
	URL string `yaml:"url"`
	// Stream is the JetStream stream holding every event. Default: TOKENRELAY.
	Stream string `yaml:"stream"`
	// SubjectPrefix starts every subject tokenrelay publishes or serves on,
	// so that several installations can share one NATS. A prefix that does
	// not end with "." gets one, so it is always whole tokens ("staging."
	// makes "staging.token.renewed.…"). Default: "" (no prefix).
	SubjectPrefix string `yaml:"subject_prefix"`
	// CredsFile is a NATS credentials file (user JWT and NKey seed, from
	// nsc or the account server). Default: none.
	CredsFile string `yaml:"creds_file"`
	// NKeySeedFile is a file holding a user NKey seed ("SU..."), for
	// servers configured with nkey users. Not with CredsFile. Default: none.
	NKeySeedFile string `yaml:"nkey_seed_file"`
	// TLS adds a CA and a client certificate; setting any of it (or a
	// tls:// URL) turns TLS on. Default: none.
	TLS TLS `yaml:"tls"`
	// InboxPrefix is where request/reply answers may go: token.get and
	// request.submit requests whose reply subject is not under it are
	// dropped and logged, never answered, so no requester can make
	// tokenrelay publish elsewhere. Subject tokens ending with ".", e.g.
	// "_INBOX.tenant-a." when clients use nats.CustomInboxPrefix.
	// Default: "_INBOX." (nats.go's inboxes).
	InboxPrefix string `yaml:"inbox_prefix"`
	// TokenCacheSize bounds the credentials whose current token a worker
	// keeps in memory (sealed under a key of its own) to answer token.get
	// through a Redis outage. Default 0: 100000 (tokenservice.DefaultCacheSize).
	TokenCacheSize int `yaml:"token_cache_size"`
	// TokenStallTimeout is how long a token.get waits for Redis before it
	// is answered from that cache. Default 0: 250ms.
	TokenStallTimeout Duration `yaml:"token_stall_timeout"`
	// TokenConcurrency is how many token.get requests a worker answers at
	// once. Default 0: 64.
	TokenConcurrency int `yaml:"token_concurrency"`
	// StreamReplicas is how many copies of the stream a NATS cluster keeps
	// (3 in a 3-node cluster, so that losing a server loses no event and
	// stops nothing). Every process creates or updates the stream with it
	// at start. Default 0: an existing stream keeps its replicas, a new
	// one gets 1 (a single server).
	StreamReplicas int `yaml:"stream_replicas"`
}

// HTTP configures the worker's HTTP server.
type HTTP struct {
	// Addr is the host:port the worker listens on, overridden by
	// TOKENRELAY_HTTP_ADDR; port 0 picks any free port. Default: 127.0.0.1:8080.
	Addr string `yaml:"addr"`
	// AdminToken is the bearer token of the admin API, the operator pages
	// and the queue dashboard. It must be at least MinTokenLength
	// characters of a random value (32 random bytes, e.g. openssl rand
	// -base64 32); a shorter or repetitive one is refused at start.
	// Default: empty, which turns the admin API off.
	AdminToken secret.Value `yaml:"admin_token"`
	// PrometheusURL is the Prometheus server that scrapes tokenrelay; the
	// queue dashboard (asynqmon, /asynqmon/) queries it for its Metrics tab.
	// Default: empty, no Metrics tab.
	PrometheusURL string `yaml:"prometheus_url"`
	// CredentialMetrics says what /metrics shows of each credential:
	// "per_credential" (the default) adds its token's expiry and last
	// renewal as two series per credential, as cert-manager does for
	// certificates; "per_vendor" leaves them out for fleets so large that
	// they make scrapes heavy, keeping each vendor's soonest expiry and
	// oldest renewal.
	CredentialMetrics string `yaml:"credential_metrics"`
	// MetricsToken, if set, is the bearer token /metrics requires (of the
	// worker and of the scheduler's scheduler.metrics_addr); Prometheus
	// sends it with authorization: {credentials_file: ...}. Like
	// admin_token it must be at least MinTokenLength characters of a
	// random value. Default: empty, /metrics is open.
	MetricsToken secret.Value `yaml:"metrics_token"`
}

// The values of http.credential_metrics.
const (
	CredentialMetricsPerCredential = "per_credential"
	CredentialMetricsPerVendor     = "per_vendor"
)

// Scheduler paces the scheduler.
type Scheduler struct {
	// PollInterval is how often the scheduler looks for due work.
	// Default: 100ms.
	PollInterval Duration `yaml:"poll_interval"`
	// ClaimLease is how long a replica's claim on a piece of work lasts
	// before another replica may take it over. Default: 10s.
	ClaimLease Duration `yaml:"claim_lease"`
	// RotationHold is how long a key rotation stays held by a worker that
	// stops renewing it (one that crashed) before another worker may
	// resume it. A live worker renews it before each vendor call and every
	// third of it while a call runs, so it need not outlast the slowest
	// call. Default: 30s.
	RotationHold Duration `yaml:"rotation_hold"`
	// ReconcileEvery is how often every credential is checked to have a
	// pending refresh. Default: 30s.
	ReconcileEvery Duration `yaml:"reconcile_every"`
	// MetricsAddr is the host:port where the scheduler serves /metrics
	// (the event counters: renewals, failures, lead times, revocations),
	// /healthz and /readyz. Default: empty, no HTTP server.
	MetricsAddr string `yaml:"metrics_addr"`
}

// Worker tunes the worker role.
type Worker struct {
	// SpoolDir is where a worker stopping while an issued token waits for
	// Redis keeps that token, sealed under the master key, for its next
	// start to store before it takes any task. It must be an absolute path
	// on a disk that outlives the process (give each worker host or
	// container a persistent one); it is created with mode 0700, and one
	// other users may write to is refused. Default: empty, meaning
	// "tokenrelay/spool" under the user's cache directory
	// (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on Linux).
	SpoolDir string `yaml:"spool_dir"`
}

// Kind names a vendor adapter; package vendors/kind describes each.
type Kind string

// The vendor kinds. A kind, once shipped, is never renamed.
const (
	KindHalaxy      Kind = halaxy.Kind
	KindRedox       Kind = redox.Kind
	KindRedoxLegacy Kind = redoxlegacy.Kind
	KindHealthSync  Kind = healthsync.Kind
	KindFHIRPortal  Kind = fhirportal.Kind
	KindOAuth2      Kind = oauth2cc.Kind
)

// Kinds lists every kind, in the order error messages show them.
func Kinds() []Kind {
	var out []Kind
	for _, name := range kind.Names() {
		out = append(out, Kind(name))
	}
	return out
}

// Vendor is one named vendor instance: an account or environment of a kind
// of vendor, with its endpoints, token policy, rate budget and webhooks.
type Vendor struct {
	// Name is the key under vendors; it is filled in by Parse and SetDefaults,
	// and is what credentials, events and metrics refer to.
	Name string `yaml:"-"`
	// Kind picks the adapter. Required; one of Kinds().
	Kind Kind `yaml:"kind"`
	// Region picks the default BaseURL. halaxy: "au" (default) or "eu" (EU
	// and UK customers); redox and redox-legacy: "us" (default) or "ca".
	// Other kinds have no region.
	Region string `yaml:"region"`
	// BaseURL is the API root every request path is joined to; it always
	// ends with "/" (one is added). Default by kind and region: halaxy
	// https://au-api.halaxy.com/main/ (eu: https://eu-api.halaxy.com/main/);
	// redox and redox-legacy https://api.redoxengine.com/ (ca:
	// https://api.ca.redoxengine.com/); healthsync
	// https://api.healthsync.com/v1/. Required for fhir-portal and oauth2.
	BaseURL string `yaml:"base_url"`
	// TokenURL is the OAuth 2.0 token endpoint. Required for oauth2; for the
	// other kinds empty means the adapter's own (derived from BaseURL, or
	// discovered for fhir-portal).
	TokenURL string `yaml:"token_url"`
	// Scopes are requested with every token. Default: none.
	Scopes []string `yaml:"scopes"`
	// UserAgent is sent with every request. Required for halaxy, in the form
	// "NAME (EMAIL)" that Halaxy asks for. Default: empty (Go's own).
	UserAgent string `yaml:"user_agent"`
	// MaxTokenLifetime caps the lifetime a token endpoint claims: the
	// effective lifetime is the shorter of the two. Default by kind: halaxy
	// 15m, redox 5m, redox-legacy 24h, others 0 (no cap).
	MaxTokenLifetime Duration `yaml:"max_token_lifetime"`
	// RefreshAt is the fraction of the effective lifetime at which a token
	// is refreshed, in (0, 1). Default: 2/3.
	RefreshAt float64 `yaml:"refresh_at"`
	// RefreshJitter lets a refresh happen up to this fraction of the
	// lifetime earlier, at random, so that tokens issued together are not
	// refreshed together; in [0, RefreshAt). Default: 0.1 (an explicit 0 in
	// the file turns jitter off; in Go, set 0 after SetDefaults).
	RefreshJitter float64 `yaml:"refresh_jitter"`
	// RotateEvery is how often a credential's key is replaced (create the
	// new key, verify it, switch, revoke the old one), for the kinds that
	// can: healthsync in mode api_key (key management) and redox (signing
	// keys published in the worker's JWKS). Default: healthsync 90d, as
	// HealthSync advises; others 0 (never on a schedule).
	RotateEvery Duration `yaml:"rotate_every"`
	// Mode is how the vendor's credentials get in, for the kinds with
	// several ways. redox-legacy: "reauthenticate" (key and secret every
	// time, as Redox recommends) or "refresh" (the rotating refresh token
	// while it lives); healthsync: "api_key" (static keys, verified by a
	// read; the only mode that rotates keys), "oauth" (a user's delegation,
	// renewed with refresh tokens) or "service_account" (client
	// credentials). Default: "" (reauthenticate, api_key); other kinds have
	// no mode.
	Mode string `yaml:"mode"`
	// KeyPaths are HealthSync's key-management paths, relative to
	// base_url: HealthSync does not publish them. healthsync only.
	// Default: each empty path is the sandbox's (see KeyPaths).
	KeyPaths KeyPaths `yaml:"key_paths"`
	// RateLimit is the request budget of one account, shared by every
	// worker. Default: halaxy 500 per 1m; others none (only the vendor's
	// rate-limit headers and 429s pace requests).
	RateLimit RateLimit `yaml:"rate_limit"`
	// Webhooks says how webhooks from this vendor are verified.
	// Default: none accepted.
	Webhooks Webhooks `yaml:"webhooks"`
}

// Vendor modes (Vendor.Mode).
const (
	ModeReauthenticate = string(redoxlegacy.ModeReauthenticate) // redox-legacy (default)
	ModeRefresh        = string(redoxlegacy.ModeRefresh)        // redox-legacy
	ModeAPIKey         = string(healthsync.ModeAPIKey)          // healthsync (default)
	ModeOAuth          = string(healthsync.ModeOAuth)           // healthsync
	ModeServiceAccount = string(healthsync.ModeServiceAccount)  // healthsync
)

// KeyPaths are the key-management paths of a healthsync vendor, relative
// to its base_url. Each empty one takes the sandbox's default, given here.
type KeyPaths struct {
	// Create is POSTed to create a key. Default "keys".
	Create string `yaml:"create"`
	// List lists the account's keys. Default "keys".
	List string `yaml:"list"`
	// Revoke is DELETEd to revoke a key; "{id}" stands for the key's id and
	// is required. Default "keys/{id}".
	Revoke string `yaml:"revoke"`
	// Current describes the authenticating key. Default "keys/current".
	Current string `yaml:"current"`
	// Verify is the cheap read that checks a key. Default "records?limit=1".
	Verify string `yaml:"verify"`
}

// RateLimit allows Limit requests in any window of length Per.
type RateLimit struct {
	// Limit is the number of requests per window; 0 means no limit of ours.
	// Default: halaxy 500, others 0.
	Limit int `yaml:"limit"`
	// Per is the length of the window. Required when Limit is set.
	// Default: halaxy 1m, others 0.
	Per Duration `yaml:"per"`
	// Window is how the vendor counts: "sliding" (at most Limit in any Per,
	// as Halaxy) or "fixed" (Limit per window of Per, the count starting
	// afresh at the vendor's X-RateLimit-Reset, as HealthSync's hours).
	// Default (empty): fixed for healthsync, sliding for the others.
	Window string `yaml:"window"`
	// Slack is how long a request may take to reach the vendor after the
	// budget let it go; the budget counts each request that much later, so
	// that the vendor's own window never sees more than Limit. Set it to
	// the network delay to the vendor when that is well below Per/100.
	// Default (0): Per/100, between 2ms and 500ms.
	Slack Duration `yaml:"slack"`
}

// Verify names a way of checking that a webhook comes from its vendor.
type Verify string

// The webhook verification methods.
const (
	// VerifyNone accepts no webhooks from the vendor (POST /webhooks/{vendor}
	// answers 404), unless AcceptUnverified is set explicitly: then every
	// delivery is accepted unchecked, and the worker warns at start-up.
	VerifyNone Verify = "none"
	// VerifyToken compares a header with Secret in constant time (Halaxy's
	// static authentication header, Redox's verification-token).
	VerifyToken Verify = "token"
	// VerifyHMACSHA256 checks the hex or base64 HMAC-SHA256 of the body,
	// keyed with Secret, found in Header.
	VerifyHMACSHA256 Verify = "hmac-sha256"
	// VerifyStandardWebhooks checks the Standard Webhooks headers
	// (webhook-id, webhook-timestamp, webhook-signature); Header is unused.
	VerifyStandardWebhooks Verify = "standard-webhooks"
)

// verifies lists every Verify, in the order error messages show them.
var verifies = []Verify{VerifyNone, VerifyToken, VerifyHMACSHA256, VerifyStandardWebhooks}

// Webhooks configures how webhooks from one vendor are received (POST
// /webhooks/{vendor} on the worker) and verified, and the polling that
// stands in for them. Zero values take the defaults given; the webhooks
// package fills them.
type Webhooks struct {
	// Verify is the method. Default: none.
	Verify Verify `yaml:"verify"`
	// Secret is the shared token or HMAC key (standard-webhooks:
	// "whsec_<base64>"). Required unless Verify is none.
	Secret secret.Value `yaml:"secret"`
	// PreviousSecrets are still accepted besides Secret while a rotation is
	// under way (the vendor may sign with the old one, or with both).
	// Default: none.
	PreviousSecrets []secret.Value `yaml:"previous_secrets"`
	// Header carries the token or signature. Default: token:
	// "verification-token" for redox and redox-legacy, "Authorization"
	// otherwise; hmac-sha256: "X-Signature"; unused by standard-webhooks.
	Header string `yaml:"header"`
	// AcceptUnverified, with Verify none, accepts every delivery without
	// checking where it comes from (the worker warns at start-up). Default:
	// false (verify none accepts no webhooks at all).
	AcceptUnverified bool `yaml:"accept_unverified"`
	// MaxBody is the largest body accepted, in bytes; a larger one gets 413.
	// Default: 1048576 (1 MiB).
	MaxBody int `yaml:"max_body"`
	// Tolerance is how far a signed timestamp (standard-webhooks) may be
	// from now, either way. Default: 5m.
	Tolerance Duration `yaml:"tolerance"`
	// DedupWindow is how long a delivery id is remembered so that a
	// redelivery is acknowledged and not relayed again (vendors retry for
	// hours or days). Default: 7d.
	DedupWindow Duration `yaml:"dedup_window"`
	// FetchCredential is the credential whose token fetches what a
	// notification only names (id-only FHIR notifications, a catch-up after
	// missed ones) and polls. Default: none (an id-only notification is
	// relayed as it is, without a fetch). Required with Polling.Resources.
	FetchCredential string `yaml:"fetch_credential"`
	// Polling is the fallback when the vendor cannot push or has gone quiet.
	Polling Polling `yaml:"polling"`
	// MaxFetchesPerDelivery bounds the resources one notification has
	// fetched (each resource it names counts once); the others are dropped,
	// logged and counted. Default: 20, and never more than fetch_rate.limit.
	MaxFetchesPerDelivery int `yaml:"max_fetches_per_delivery"`
	// FetchRate bounds the fetches notifications trigger (id-only resources
	// and catch-ups), every worker together. A notification whose fetches
	// would exceed it gets 503 with Retry-After, unrelayed, and the vendor
	// sends it again later; a catch-up waits for the next notification.
	// Default: a fifth of rate_limit (at least 1) per rate_limit.per; 60 per
	// 1m when the vendor has no rate_limit.
	FetchRate FetchRate `yaml:"fetch_rate"`
	// MaxCatchUp bounds the missed events one catch-up asks for: a gap in
	// the event numbers wider than that asks for the last MaxCatchUp only,
	// and is logged and counted (run a sync). Default: 100.
	MaxCatchUp int `yaml:"max_catch_up"`
}

// FetchRate allows Limit fetches in any window of length Per.
type FetchRate struct {
	// Limit is the number of fetches per window. Required when Per is set.
	Limit int `yaml:"limit"`
	// Per is the length of the window. Required when Limit is set.
	Per Duration `yaml:"per"`
}

// Defaults of the bounds on the fetches webhooks trigger, filled in by the
// webhooks package.
const (
	DefaultWebhookMaxFetchesPerDelivery = 20
	DefaultWebhookMaxCatchUp            = 100
	// DefaultWebhookFetchRateShare: the default fetch_rate is the vendor's
	// rate_limit divided by this.
	DefaultWebhookFetchRateShare = 5
)

// DefaultWebhookFetchRate is the fetch_rate of a vendor without rate_limit.
var DefaultWebhookFetchRate = FetchRate{Limit: 60, Per: Duration(time.Minute)}

// Defaults of Webhooks and Polling, filled in by the webhooks package.
const (
	DefaultWebhookMaxBody     = 1 << 20
	DefaultWebhookTolerance   = Duration(5 * time.Minute)
	DefaultWebhookDedupWindow = Duration(7 * day)
	DefaultPollingInterval    = Duration(5 * time.Minute)
	DefaultPollingSilentAfter = Duration(15 * time.Minute)
)

// Polling polls a vendor's resources through the shared rate budget, but
// only where webhooks cannot do the job: when the vendor accepts no
// webhooks (verify none without accept_unverified), or while its webhooks
// (heartbeats included) have been silent for longer than SilentAfter. It
// stops by itself when they flow again.
type Polling struct {
	// Resources are the resource types polled, e.g. [Patient, Appointment]
	// (each a path below base_url, polled with _lastUpdated=gt<last poll>).
	// Default: none (no polling).
	Resources []string `yaml:"resources"`
	// Interval is how often each resource is polled while polling.
	// Default: 5m.
	Interval Duration `yaml:"interval"`
	// SilentAfter is how long webhooks may be silent before polling takes
	// over. Default: 15m.
	SilentAfter Duration `yaml:"silent_after"`
}

// Credential is one static credential: what the vendor issued for one
// clinic, source or patient. Which secret fields a kind needs:
//
//   - halaxy, fhir-portal, oauth2: client_id and client_secret.
//   - redox: client_id, key_id and either private_key (RS384/ES384, PEM) or
//     client_secret (HS384).
//   - redox-legacy: client_id (the API key) and client_secret (its secret).
//   - healthsync: api_key.
type Credential struct {
	// ID names the credential in events, subjects and the admin API; it
	// matches [A-Za-z0-9_-]{1,64} and is unique. Required.
	ID string `yaml:"id"`
	// Vendor is the name of the vendor instance, a key under vendors. Required.
	Vendor string `yaml:"vendor"`
	// ClientID is the OAuth client id (redox-legacy: the API key).
	ClientID string `yaml:"client_id"`
	// ClientSecret is the OAuth client secret (redox: the HS384 signing
	// secret; redox-legacy: the API key's secret).
	ClientSecret secret.Value `yaml:"client_secret"`
	// PrivateKey is the PEM private key signing redox client assertions.
	PrivateKey secret.Value `yaml:"private_key"`
	// KeyID is the kid of the redox signing key.
	KeyID string `yaml:"key_id"`
	// APIKey is a healthsync API key.
	APIKey secret.Value `yaml:"api_key"`
	// RefreshToken is the refresh token of a user's delegation that the
	// first renewal redeems (healthsync in mode oauth, where it is
	// required). Later renewals use the newest one the vendor returned.
	RefreshToken secret.Value `yaml:"refresh_token"`
}

// Defaults of the top-level sections.
const (
	DefaultRedisURL       = "redis://127.0.0.1:6379/0"
	DefaultRedisPrefix    = "tokenrelay:"
	DefaultNATSURL        = "nats://127.0.0.1:4222"
	DefaultNATSStream     = "TOKENRELAY"
	DefaultNATSInbox      = "_INBOX."
	DefaultHTTPAddr       = "127.0.0.1:8080"
	DefaultPollInterval   = Duration(100 * time.Millisecond)
	DefaultClaimLease     = Duration(10 * time.Second)
	DefaultRotationHold   = Duration(30 * time.Second)
	DefaultReconcileEvery = Duration(30 * time.Second)
	DefaultRefreshAt      = 2.0 / 3.0
	DefaultRefreshJitter  = 0.1
)

// DefaultReplicaAckTimeout is what redis.replica_ack_timeout 0 stands for
// (store.DefaultReplicaAckTimeout).
const DefaultReplicaAckTimeout = Duration(time.Second)

// SetDefaults fills every zero field with its default, names each vendor
// after its key, and adds the trailing "/" to base URLs and "." to the
// subject prefix. Parse calls it; call it on a Config built in Go before
// Validate. It never overwrites a value that is set.
func (c *Config) SetDefaults() { c.setDefaults(nil) }

// setDefaults is SetDefaults; jitterSet reports the vendors whose file set
// refresh_jitter explicitly (so that 0 stays 0).
func (c *Config) setDefaults(jitterSet map[string]bool) {
	setString(&c.Redis.URL, DefaultRedisURL)
	setString(&c.Redis.Prefix, DefaultRedisPrefix)
	setString(&c.NATS.URL, DefaultNATSURL)
	setString(&c.NATS.Stream, DefaultNATSStream)
	setString(&c.NATS.InboxPrefix, DefaultNATSInbox)
	if p := c.NATS.SubjectPrefix; p != "" && !strings.HasSuffix(p, ".") {
		c.NATS.SubjectPrefix = p + "."
	}
	setString(&c.HTTP.Addr, DefaultHTTPAddr)
	setString(&c.HTTP.CredentialMetrics, CredentialMetricsPerCredential)
	setDuration(&c.Scheduler.PollInterval, DefaultPollInterval)
	setDuration(&c.Scheduler.ClaimLease, DefaultClaimLease)
	setDuration(&c.Scheduler.RotationHold, DefaultRotationHold)
	setDuration(&c.Scheduler.ReconcileEvery, DefaultReconcileEvery)
	c.Syncs.setDefaults()
	for name, v := range c.Vendors {
		v.setDefaults(name, jitterSet[name])
		c.Vendors[name] = v
	}
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setDuration(d *Duration, def Duration) {
	if *d == 0 {
		*d = def
	}
}
