package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/secret"
)

// masterKey is the raw master key the test environment carries in base64.
const masterKey = "0123456789abcdef0123456789abcdef"

// privateKeyPEM is a real PEM private key for redox credentials.
var privateKeyPEM = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}()

// baseEnv is what every test's environment starts from: each value is a
// distinctive secret, so that a leak in an error message is easy to spot.
func baseEnv() map[string]string {
	return map[string]string{
		"TOKENRELAY_SECRET_KEY":     base64.StdEncoding.EncodeToString([]byte(masterKey)),
		"TOKENRELAY_ADMIN_TOKEN":    "s3cret-admin-token-0123456789abcdefghijklmnopqrstuv",
		"HALAXY_WEBHOOK_SECRET":     "s3cret-halaxy-webhook",
		"CID":                       "s3cret-cid-42",
		"CSECRET":                   "s3cret-client-secret-42",
		"CLINIC7_SECRET":            "s3cret-clinic-7",
		"REDOX_CLIENT_ID":           "s3cret-redox-client-id",
		"REDOX_PRIVATE_KEY":         privateKeyPEM,
		"REDOX_VERIFICATION_TOKEN":  "s3cret-redox-verification",
		"REDOX_API_KEY":             "s3cret-redox-api-key",
		"REDOX_API_SECRET":          "s3cret-redox-api-secret",
		"HEALTHSYNC_API_KEY":        "s3cret-healthsync-api-key",
		"HEALTHSYNC_WEBHOOK_SECRET": "s3cret-healthsync-webhook",
		"HEALTHSYNC_WEBHOOK_OLD":    "s3cret-healthsync-webhook-old",
		"PORTAL_P1_SECRET":          "s3cret-portal-p1",
		"GENERIC_SECRET":            "s3cret-generic",
	}
}

// lookup turns a map into an os.LookupEnv stand-in.
func lookup(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// parseFile parses testdata/name in baseEnv, with the variables in set
// added or replaced and those in unset removed.
func parseFile(t *testing.T, name string, set map[string]string, unset ...string) (*config.Config, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	env := baseEnv()
	for k, v := range set {
		env[k] = v
	}
	for _, k := range unset {
		delete(env, k)
	}
	return config.Parse(data, lookup(env))
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	cfg, err := parseFile(t, "valid.yaml", nil)
	require.NoError(t, err)

	halaxy := func(name, region, base string) config.Vendor {
		return config.Vendor{
			Name:             name,
			Kind:             config.KindHalaxy,
			Region:           region,
			BaseURL:          base,
			UserAgent:        "Acme Sync (ops@acme.example)",
			MaxTokenLifetime: config.Duration(15 * time.Minute),
			RefreshAt:        config.DefaultRefreshAt,
			RefreshJitter:    0.1,
			RateLimit:        config.RateLimit{Limit: 500, Per: config.Duration(time.Minute)},
			Webhooks:         config.Webhooks{Verify: config.VerifyNone},
		}
	}
	halaxyAU := halaxy("halaxy-au", "au", "https://au-api.halaxy.com/main/")
	halaxyAU.RefreshAt = 0.6667
	halaxyAU.Webhooks = config.Webhooks{
		Verify: config.VerifyToken,
		Secret: secret.New("s3cret-halaxy-webhook"),
		Header: "Authorization",
	}
	want := &config.Config{
		Redis: config.Redis{URL: "redis://127.0.0.1:6379/0", Prefix: "tokenrelay:"},
		NATS: config.NATS{URL: "nats://127.0.0.1:4222", Stream: "TOKENRELAY", SubjectPrefix: "staging.", InboxPrefix: "_INBOX.",
			TokenCacheSize: 100000, TokenStallTimeout: config.Duration(250 * time.Millisecond), TokenConcurrency: 64, StreamReplicas: 1},
		HTTP:      config.HTTP{Addr: "127.0.0.1:8080", AdminToken: secret.New("s3cret-admin-token-0123456789abcdefghijklmnopqrstuv"), CredentialMetrics: config.CredentialMetricsPerCredential},
		Scheduler: config.Scheduler{PollInterval: config.Duration(100 * time.Millisecond), ClaimLease: config.Duration(10 * time.Second), RotationHold: config.Duration(30 * time.Second), ReconcileEvery: config.Duration(30 * time.Second)},
		Syncs:     config.Syncs{MaxPages: config.DefaultSyncMaxPages, Overlap: config.DefaultSyncOverlap},
		Vendors: map[string]config.Vendor{
			"halaxy-au": halaxyAU,
			"halaxy-eu": halaxy("halaxy-eu", "eu", "https://eu-api.halaxy.com/main/"),
			"redox-prod": {
				Name:             "redox-prod",
				Kind:             config.KindRedox,
				Region:           "ca",
				BaseURL:          "https://api.ca.redoxengine.com/",
				MaxTokenLifetime: config.Duration(5 * time.Minute),
				RotateEvery:      config.Duration(90 * 24 * time.Hour),
				RefreshAt:        config.DefaultRefreshAt,
				RefreshJitter:    0.1,
				Webhooks: config.Webhooks{
					Verify: config.VerifyToken,
					Secret: secret.New("s3cret-redox-verification"),
					Header: "verification-token",
				},
			},
			"redox-legacy": {
				Name:             "redox-legacy",
				Kind:             config.KindRedoxLegacy,
				Mode:             config.ModeReauthenticate,
				Region:           "us",
				BaseURL:          "https://api.redoxengine.com/",
				MaxTokenLifetime: config.Duration(24 * time.Hour),
				RefreshAt:        config.DefaultRefreshAt,
				RefreshJitter:    0, // explicitly off
				Webhooks:         config.Webhooks{Verify: config.VerifyNone, AcceptUnverified: true},
			},
			"healthsync": {
				Name:          "healthsync",
				Kind:          config.KindHealthSync,
				Mode:          config.ModeAPIKey,
				KeyPaths:      config.KeyPaths{Create: "keys", List: "keys", Revoke: "keys/{id}", Current: "keys/current", Verify: "records?limit=1"},
				BaseURL:       "https://api.healthsync.com/v1/",
				RotateEvery:   config.Duration(90 * 24 * time.Hour),
				RefreshAt:     config.DefaultRefreshAt,
				RefreshJitter: 0.1,
				RateLimit:     config.RateLimit{Limit: 1000, Per: config.Duration(time.Hour)},
				Webhooks: config.Webhooks{
					Verify:          config.VerifyStandardWebhooks,
					Secret:          secret.New("s3cret-healthsync-webhook"),
					PreviousSecrets: []secret.Value{secret.New("s3cret-healthsync-webhook-old")},
					MaxBody:         1 << 20,
					Tolerance:       config.Duration(5 * time.Minute),
					DedupWindow:     config.Duration(7 * 24 * time.Hour),
					FetchCredential: "hs-main",
					Polling: config.Polling{
						Resources:   []string{"Patient", "Appointment"},
						Interval:    config.Duration(5 * time.Minute),
						SilentAfter: config.Duration(15 * time.Minute),
					},
				},
			},
			"portal": {
				Name:          "portal",
				Kind:          config.KindFHIRPortal,
				BaseURL:       "https://fhir.portal.example/r4/",
				RefreshAt:     config.DefaultRefreshAt,
				RefreshJitter: 0.1,
				Webhooks:      config.Webhooks{Verify: config.VerifyNone},
			},
			"generic": {
				Name:             "generic",
				Kind:             config.KindOAuth2,
				BaseURL:          "https://api.example.com/v2/",
				TokenURL:         "https://auth.example.com/oauth/token",
				Scopes:           []string{"patient.read", "appointment.read"},
				MaxTokenLifetime: config.Duration(time.Hour),
				RefreshAt:        0.5,
				RefreshJitter:    0.05,
				Webhooks:         config.Webhooks{Verify: config.VerifyNone},
			},
		},
		Credentials: []config.Credential{
			{ID: "clinic-42", Vendor: "halaxy-au", ClientID: "s3cret-cid-42", ClientSecret: secret.New("s3cret-client-secret-42")},
			{ID: "clinic-7", Vendor: "halaxy-eu", ClientID: "clinic-7-client", ClientSecret: secret.New("s3cret-clinic-7")},
			{ID: "source-1", Vendor: "redox-prod", ClientID: "s3cret-redox-client-id", KeyID: "key-2024", PrivateKey: secret.New(privateKeyPEM)},
			{ID: "legacy-1", Vendor: "redox-legacy", ClientID: "s3cret-redox-api-key", ClientSecret: secret.New("s3cret-redox-api-secret")},
			{ID: "hs-main", Vendor: "healthsync", APIKey: secret.New("s3cret-healthsync-api-key")},
			{ID: "patient-1", Vendor: "portal", ClientID: "p1", ClientSecret: secret.New("s3cret-portal-p1")},
			{ID: "svc", Vendor: "generic", ClientID: "svc", ClientSecret: secret.New("s3cret-generic")},
		},
		SecretKey: secret.New(masterKey),
	}
	require.Equal(t, want, cfg)
}

func TestParseContractExample(t *testing.T) {
	t.Parallel()
	// Unquoted ${…} inside flow mappings, as the contract writes them.
	cfg, err := parseFile(t, "contract.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, secret.New("s3cret-client-secret-42"), cfg.Credentials[0].ClientSecret)
	require.Equal(t, secret.New("s3cret-halaxy-webhook"), cfg.Vendors["halaxy-au"].Webhooks.Secret)
	require.Equal(t, "X-Signature", cfg.Vendors["halaxy-au"].Webhooks.Header)
}

func TestParseEnvOverridesWin(t *testing.T) {
	t.Parallel()
	cfg, err := parseFile(t, "valid.yaml", map[string]string{
		"REDIS_URL":            "rediss://:pw@redis.internal:6380/2",
		"NATS_URL":             "tls://nats-1.internal:4222,tls://nats-2.internal:4222",
		"TOKENRELAY_HTTP_ADDR": ":0",
	})
	require.NoError(t, err)
	require.Equal(t, "rediss://:pw@redis.internal:6380/2", cfg.Redis.URL)
	require.Equal(t, "tls://nats-1.internal:4222,tls://nats-2.internal:4222", cfg.NATS.URL)
	require.Equal(t, ":0", cfg.HTTP.Addr)
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseFile(t, "empty.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, &config.Config{
		Redis:     config.Redis{URL: config.DefaultRedisURL, Prefix: config.DefaultRedisPrefix},
		NATS:      config.NATS{URL: config.DefaultNATSURL, Stream: config.DefaultNATSStream, InboxPrefix: config.DefaultNATSInbox},
		HTTP:      config.HTTP{Addr: config.DefaultHTTPAddr, CredentialMetrics: config.CredentialMetricsPerCredential},
		Scheduler: config.Scheduler{PollInterval: config.DefaultPollInterval, ClaimLease: config.DefaultClaimLease, RotationHold: config.DefaultRotationHold, ReconcileEvery: config.DefaultReconcileEvery},
		Syncs:     config.Syncs{MaxPages: config.DefaultSyncMaxPages, Overlap: config.DefaultSyncOverlap},
		SecretKey: secret.New(masterKey),
	}, cfg)

	cfg, err = parseFile(t, "minimal.yaml", nil)
	require.NoError(t, err)
	v := cfg.Vendors["halaxy-au"]
	require.Equal(t, "https://au-api.halaxy.com/main/", v.BaseURL)
	require.Equal(t, config.Duration(15*time.Minute), v.MaxTokenLifetime)
	require.Equal(t, config.RateLimit{Limit: 500, Per: config.Duration(time.Minute)}, v.RateLimit)
	require.InDelta(t, 2.0/3.0, v.RefreshAt, 1e-9)
	require.InDelta(t, 0.1, v.RefreshJitter, 1e-9)
}

func TestParseExpansion(t *testing.T) {
	t.Parallel()
	// A value that would be YAML structure if it were pasted into the file.
	inject := "x\nkind: evil\n  - {id: injected, vendor: generic}\n"
	cfg, err := parseFile(t, "expansion.yaml", map[string]string{
		"API_HOST": "api.example.com",
		"NAME":     "Acme",
		"LIFETIME": "90d",
		"CRED_ID":  "svc-1",
		"INJECT":   inject,
	})
	require.NoError(t, err)
	v := cfg.Vendors["generic"]
	require.Equal(t, config.KindOAuth2, v.Kind)
	require.Equal(t, "https://api.example.com/v2/", v.BaseURL)
	require.Equal(t, "Cost ${HOME} for Acme, $$5 and $x", v.UserAgent)
	require.Equal(t, config.Duration(90*24*time.Hour), v.MaxTokenLifetime)
	require.Len(t, cfg.Credentials, 1)
	require.Equal(t, "svc-1", cfg.Credentials[0].ID)
	require.Equal(t, "${LITERAL}", cfg.Credentials[0].ClientID, "$${ escapes, in a flow mapping too")
	require.Equal(t, inject, cfg.Credentials[0].ClientSecret.Reveal())
}

func TestParseMergeKeys(t *testing.T) {
	t.Parallel()
	cfg, err := parseFile(t, "merge.yaml", nil)
	require.NoError(t, err)
	eu := cfg.Vendors["halaxy-eu"]
	require.Equal(t, config.KindHalaxy, eu.Kind)
	require.Equal(t, "https://eu-api.halaxy.com/main/", eu.BaseURL)
	require.Equal(t, config.Duration(12*time.Minute), eu.MaxTokenLifetime)
	require.Equal(t, config.Duration(10*time.Minute), cfg.Vendors["halaxy-au"].MaxTokenLifetime)
}

// failures is one case per way of refusing a configuration.
var failures = []struct {
	name  string
	file  string
	set   map[string]string
	unset []string
	want  string
}{
	{"unknown field", "unknown_field.yaml", nil, nil,
		`line 3: redis.urll: unknown field "urll"; did you mean "url"? (allowed: url, prefix, sentinel, cluster, tls, min_replica_acks, replica_ack_timeout)`},
	{"unknown nested field", "unknown_field_nested.yaml", nil, nil,
		`line 8: vendors.halaxy-au.webhooks.signature_header: unknown field "signature_header" (allowed: verify, secret, previous_secrets, header, accept_unverified, max_body, tolerance, dedup_window, fetch_credential, polling, max_fetches_per_delivery, fetch_rate, max_catch_up)`},
	{"missing secret", "missing_secret.yaml", nil, []string{"CSECRET"},
		`line 6: credentials[0].client_secret: environment variable CSECRET is not set (export it, or remove the field)`},
	{"empty secret", "missing_secret.yaml", map[string]string{"CSECRET": ""}, nil,
		`credentials[0].client_secret: environment variable CSECRET is empty; the field is required for kind halaxy (vendor halaxy-au)`},
	{"secret field left out", "missing_field_secret.yaml", nil, nil,
		`credentials[0].client_secret: required for kind halaxy (vendor halaxy-au)`},
	{"bad duration", "bad_duration.yaml", nil, nil,
		`line 5: vendors.halaxy-au.max_token_lifetime: "15x" is not a duration (use e.g. 15m, 1h, 90d)`},
	{"negative duration", "negative_duration.yaml", nil, nil,
		`scheduler.claim_lease: "-10s" is negative`},
	{"negative token cache", "negative_token_cache.yaml", nil, nil,
		`nats.token_cache_size: must not be negative (credentials; 0 for the default 100000)`},
	{"relative spool dir", "relative_spool_dir.yaml", nil, nil,
		`worker.spool_dir: "var/spool" must be an absolute path`},
	{"bad duration from the environment", "duration_from_env.yaml", map[string]string{"LIFETIME": "fortnight"}, nil,
		`vendors.halaxy-au.max_token_lifetime: "${LIFETIME}" (after expansion) is not a duration`},
	{"bad id", "bad_id.yaml", nil, nil,
		`credentials[2].id: "bad id!" must match [A-Za-z0-9_-]{1,64}`},
	{"bad vendor name", "bad_vendor_name.yaml", nil, nil,
		`vendors.halaxy au!: vendor name "halaxy au!" must match [A-Za-z0-9_-]{1,64}`},
	{"unknown kind", "unknown_kind.yaml", nil, nil,
		`vendors.halaxy-au.kind: unknown kind "halaxi" (one of halaxy, redox, redox-legacy, healthsync, fhir-portal, oauth2)`},
	{"missing kind", "missing_kind.yaml", nil, nil,
		`vendors.halaxy-au.kind: required (one of halaxy,`},
	{"undefined vendor", "undefined_vendor.yaml", nil, nil,
		`credentials[1].vendor: vendor "nope" is not defined under vendors (defined: halaxy-au)`},
	{"duplicate id", "duplicate_id.yaml", nil, nil,
		`credentials[1].id: "clinic-42" is also the id of credentials[0] (ids must be unique)`},
	{"missing user agent", "missing_user_agent.yaml", nil, nil,
		`vendors.halaxy-au.user_agent: required for kind halaxy, as "NAME (EMAIL)"`},
	{"bad user agent", "bad_user_agent.yaml", nil, nil,
		`vendors.halaxy-au.user_agent: "Acme Sync" must look like "NAME (EMAIL)"`},
	{"oauth2 without token url", "oauth2_no_token_url.yaml", nil, nil,
		`vendors.generic.token_url: required for kind oauth2`},
	{"missing base url", "missing_base_url.yaml", nil, nil,
		`vendors.portal.base_url: required for kind fhir-portal`},
	{"bad base url", "bad_base_url.yaml", nil, nil,
		`vendors.healthsync.base_url: scheme "ftp" is not https:// or http://`},
	{"bad redis url", "bad_redis_url.yaml", nil, nil,
		`redis.url: scheme "http" is not redis:// or rediss://`},
	{"bad nats url", "bad_nats_url.yaml", nil, nil,
		`nats.url: scheme "http" is not nats:// or tls://`},
	{"bad stream name", "bad_stream.yaml", nil, nil,
		`nats.stream: "token.relay" is not a JetStream stream name`},
	{"bad inbox prefix", "bad_inbox_prefix.yaml", nil, nil,
		`nats.inbox_prefix: "_INBOX.>" is not an inbox prefix`},
	{"bad refresh_at", "bad_refresh_at.yaml", nil, nil,
		`vendors.halaxy-au.refresh_at: 1.5 must be between 0 and 1, both excluded`},
	{"bad jitter", "bad_jitter.yaml", nil, nil,
		`vendors.halaxy-au.refresh_jitter: 0.5 must be at least 0 and less than refresh_at (0.5)`},
	{"bad region", "bad_region.yaml", nil, nil,
		`vendors.halaxy-fr.region: unknown region "fr" for kind halaxy (au, or eu for EU and UK customers)`},
	{"region of a kind without regions", "region_not_used.yaml", nil, nil,
		`vendors.healthsync.region: kind healthsync has no regions (remove it)`},
	{"bad http addr", "bad_http_addr.yaml", nil, nil,
		`http.addr: "localhost" must be host:port`},
	{"wrong type", "wrong_type.yaml", nil, nil,
		`vendors.halaxy-au.rate_limit.limit: "lots" is not a whole number`},
	{"not a mapping", "not_a_mapping.yaml", nil, nil,
		`line 1: vendors: must be a mapping of names to entries (got a list)`},
	{"not a mapping at the top", "top_level_list.yaml", nil, nil,
		`line 1: the file must be a mapping of sections (got a list): redis, nats, http, scheduler, worker, vendors, credentials`},
	{"reserved character", "reserved_character.yaml", nil, nil,
		`line 2: holds a character reserved for ${…} references`},
	{"reserved character from an escape", "reserved_escape.yaml", nil, nil,
		`line 2: http.admin_token: holds a character reserved for ${…} references`},
	{"not yaml", "not_yaml.yaml", nil, nil,
		`line 2: not valid YAML: did not find expected key`},
	{"two documents", "two_documents.yaml", nil, nil,
		`line 3: holds more than one YAML document`},
	{"duplicate key", "duplicate_key.yaml", nil, nil,
		`line 3: redis: written twice (lines 1 and 3); keep one`},
	{"bad reference", "bad_reference.yaml", nil, nil,
		`line 2: http.admin_token: has a "${" that is not a reference (write ${NAME} with letters, digits and _, or $${ for a literal ${)`},
	{"webhook without secret", "webhook_no_secret.yaml", nil, nil,
		`vendors.healthsync.webhooks.secret: required when verify is hmac-sha256`},
	{"accept_unverified with a verify method", "webhook_unverified_with_verify.yaml", nil, nil,
		`vendors.healthsync.webhooks.accept_unverified: only applies to verify: none (remove it: verify standard-webhooks checks every delivery)`},
	{"polling without a fetch credential", "webhook_polling_no_credential.yaml", nil, nil,
		`vendors.healthsync.webhooks.fetch_credential: required with polling.resources (the credential whose token polls)`},
	{"not a boolean", "webhook_bad_bool.yaml", nil, nil,
		`vendors.healthsync.webhooks.accept_unverified: "maybe" is not true or false`},
	{"unknown verify", "unknown_verify.yaml", nil, nil,
		`vendors.healthsync.webhooks.verify: unknown method "signature" (one of none, token, hmac-sha256, standard-webhooks)`},
	{"rate limit without window", "rate_limit_no_per.yaml", nil, nil,
		`vendors.generic.rate_limit.per: required when rate_limit.limit is set`},
	{"bad mode", "bad_mode.yaml", nil, nil,
		`vendors.hs.mode: unknown mode "oauth2" for kind healthsync (one of api_key, oauth, service_account)`},
	{"rotation in a mode without keys", "mode_no_rotation.yaml", nil, nil,
		`vendors.hs-svc.rotate_every: only mode api_key rotates keys`},
	{"mode of a kind without modes", "mode_not_used.yaml", nil, nil,
		`vendors.halaxy-au.mode: kind halaxy has no modes (remove it)`},
	{"revoke path without id", "bad_key_paths.yaml", nil, nil,
		`vendors.hs.key_paths.revoke: "keys/delete" must hold "{id}"`},
	{"redox-legacy mode", "bad_mode_redox_legacy.yaml", nil, nil,
		`vendors.legacy.mode: unknown mode "refresh_token" for kind redox-legacy (one of reauthenticate, refresh)`},
	{"credential fields follow the mode", "mode_credential_fields.yaml", nil, nil,
		`credentials[0].api_key: not used for kind healthsync in mode oauth (vendor hs-user); remove it`},
	{"a user's delegation needs its refresh token", "oauth_needs_refresh_token.yaml", nil, nil,
		`credentials[0].refresh_token: required for kind healthsync in mode oauth (vendor hs-user)`},
	{"redox-legacy secrets are rotated in the dashboard", "rotate_legacy.yaml", nil, nil,
		`vendors.legacy.rotate_every: kind redox-legacy cannot rotate keys (remove it; only healthsync and redox can)`},
	{"rotation not supported", "rotate_not_supported.yaml", nil, nil,
		`vendors.halaxy-au.rotate_every: kind halaxy cannot rotate keys`},
	{"unused credential field", "unused_credential_field.yaml", nil, nil,
		`credentials[0].api_key: not used for kind halaxy (vendor halaxy-au); remove it`},
	{"redox without key", "redox_no_key.yaml", nil, nil,
		`credentials[0].private_key: required for kind redox (vendor redox-prod), or client_secret for HS384`},
	{"redox key not PEM", "redox_bad_key.yaml", nil, nil,
		`credentials[0].private_key: is not a PEM private key`},
	{"secret key not set", "minimal.yaml", nil, []string{"TOKENRELAY_SECRET_KEY"},
		`TOKENRELAY_SECRET_KEY: not set (generate one with: head -c 32 /dev/urandom | base64)`},
	{"secret key not base64", "minimal.yaml", map[string]string{"TOKENRELAY_SECRET_KEY": "s3cret-not-base64!"}, nil,
		`TOKENRELAY_SECRET_KEY: not valid base64`},
	{"secret key too short", "minimal.yaml", map[string]string{"TOKENRELAY_SECRET_KEY": base64.StdEncoding.EncodeToString([]byte("s3cret-16-bytes!"))}, nil,
		`TOKENRELAY_SECRET_KEY: decodes to 16 bytes, want 32`},
	{"bad TOKENRELAY_HTTP_ADDR", "minimal.yaml", map[string]string{"TOKENRELAY_HTTP_ADDR": "s3cret-addr"}, nil,
		`TOKENRELAY_HTTP_ADDR: the value must be host:port`},
	{"bad REDIS_URL", "minimal.yaml", map[string]string{"REDIS_URL": "https://user:s3cret-redis-pw@redis.internal"}, nil,
		`REDIS_URL: scheme must be redis:// or rediss://`},
	{"bad NATS_URL", "minimal.yaml", map[string]string{"NATS_URL": "s3cret-nats-user:s3cret-nats-pw@nats.internal:4222"}, nil,
		`NATS_URL: scheme must be nats:// or tls://`},
}

func TestParseFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := parseFile(t, tc.file, tc.set, tc.unset...)
			require.Error(t, err)
			require.Nil(t, cfg)
			require.Contains(t, err.Error(), tc.want)

			var ve *config.ValidationError
			require.True(t, errors.As(err, &ve))
			require.Len(t, ve.Problems, 1, "each case should have exactly its own problem:\n%v", err)
		})
	}
}

func TestParseReportsEveryProblemOnItsOwnLine(t *testing.T) {
	t.Parallel()
	_, err := parseFile(t, "many_problems.yaml", nil, "TOKENRELAY_SECRET_KEY")
	require.Error(t, err)
	require.Equal(t, `config: 5 problems:
  line 3: redis.url: scheme "http" is not redis:// or rediss:// (e.g. redis://127.0.0.1:6379/0)
  line 5: vendors.halaxy-au.user_agent: required for kind halaxy, as "NAME (EMAIL)" (e.g. "Acme Sync (ops@acme.example)")
  line 7: vendors.halaxy-au.max_token_lifetime: "15x" is not a duration (use e.g. 15m, 1h, 90d)
  line 9: credentials[0].vendor: vendor "nope" is not defined under vendors (defined: halaxy-au)
  TOKENRELAY_SECRET_KEY: not set (generate one with: head -c 32 /dev/urandom | base64)`, err.Error())
}

func TestErrorsNeverContainSecrets(t *testing.T) {
	t.Parallel()
	set := map[string]string{
		"HTTP_ADDR_SECRET": "s3cret-http-addr",
		"KIND_SECRET":      "s3cret-kind",
		"LIFETIME":         "s3cret-lifetime",
	}
	_, err := parseFile(t, "secret_leaks.yaml", set)
	require.Error(t, err)
	msgs := []string{err.Error()}
	var ve *config.ValidationError
	require.True(t, errors.As(err, &ve))
	require.GreaterOrEqual(t, len(ve.Problems), 10, "%v", err)

	for _, tc := range failures {
		_, err := parseFile(t, tc.file, tc.set, tc.unset...)
		require.Error(t, err)
		msgs = append(msgs, err.Error())
	}

	secrets := []string{"literal-s3cret", "s3cret-redis-pw", "pw@"}
	for _, env := range []map[string]string{baseEnv(), set} {
		for _, v := range env {
			secrets = append(secrets, v)
		}
	}
	for _, tc := range failures {
		for _, v := range tc.set {
			secrets = append(secrets, v)
		}
	}
	for _, msg := range msgs {
		require.NotContains(t, msg, "s3cret", "an error message holds a secret")
		for _, s := range secrets {
			if len(s) >= 8 {
				require.NotContains(t, msg, s)
			}
		}
	}
}

func TestValidateBuiltInGo(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{
		Vendors: map[string]config.Vendor{
			"halaxy-eu": {Kind: config.KindHalaxy, Region: "eu", UserAgent: "Dev (dev@example.com)"},
		},
		Credentials: []config.Credential{
			{ID: "dev-1", Vendor: "halaxy-eu", ClientID: "id", ClientSecret: secret.New("secret")},
		},
		SecretKey: secret.New(masterKey),
	}
	cfg.SetDefaults()
	require.NoError(t, cfg.Validate())
	require.Equal(t, "halaxy-eu", cfg.Vendors["halaxy-eu"].Name)
	require.Equal(t, "https://eu-api.halaxy.com/main/", cfg.Vendors["halaxy-eu"].BaseURL)
	require.Equal(t, config.Duration(30*time.Second), cfg.Scheduler.RotationHold, "a rotation whose worker died resumes within 30s")
	cfg.Scheduler.RotationHold = config.Duration(-time.Second)
	require.ErrorContains(t, cfg.Validate(), "scheduler.rotation_hold: must be more than 0")

	err := (&config.Config{}).Validate()
	require.Error(t, err)
	var ve *config.ValidationError
	require.True(t, errors.As(err, &ve))
	for _, p := range ve.Problems {
		require.Zero(t, p.Line)
	}
	require.Contains(t, err.Error(), "\n  redis.url: must not be empty")
	require.Contains(t, err.Error(), "\n  TOKENRELAY_SECRET_KEY: must hold 32 bytes, not 0")
}

func TestPath(t *testing.T) {
	t.Parallel()
	env := lookup(map[string]string{"TOKENRELAY_CONFIG": "/etc/tokenrelay/env.yaml"})
	require.Equal(t, "flag.yaml", config.Path("flag.yaml", env))
	require.Equal(t, "/etc/tokenrelay/env.yaml", config.Path("", env))
	require.Equal(t, "", config.Path("", lookup(nil)))
}

func TestLoad(t *testing.T) {
	t.Parallel()
	_, err := config.Load("")
	require.ErrorIs(t, err, config.ErrNoPath)
	require.Contains(t, err.Error(), "pass -config PATH, or set TOKENRELAY_CONFIG")

	_, err = config.Load(filepath.Join("testdata", "does-not-exist.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)

	// Independent of the process environment: the unknown field is reported
	// whatever it holds, with the file's name.
	_, err = config.Load(filepath.Join("testdata", "unknown_field.yaml"))
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), filepath.Join("testdata", "unknown_field.yaml")+`:3: redis.urll: unknown field "urll"`), err.Error())
}
