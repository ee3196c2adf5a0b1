package syncs

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
)

var (
	//go:embed lua/start.lua
	startLua    string
	scriptStart = redis.NewScript(startLua)

	//go:embed lua/commit.lua
	commitLua    string
	scriptCommit = redis.NewScript(commitLua)

	//go:embed lua/end.lua
	endLua    string
	scriptEnd = redis.NewScript(endLua)

	//go:embed lua/cancel.lua
	cancelLua    string
	scriptCancel = redis.NewScript(cancelLua)
)

// Defaults of Deps.
const (
	DefaultMaxPages = 10000
	DefaultOverlap  = 30 * time.Second
	DefaultTTL      = 7 * 24 * time.Hour
)

// Submitter queues a request job (requests.Submitter satisfies it).
type Submitter interface {
	Submit(ctx context.Context, r jobs.Request) (jobs.Request, error)
}

// Credentials reads a credential's vendor and state (the store).
type Credentials interface {
	CurrentToken(ctx context.Context, id string) (store.Credential, error)
}

// Objects stores pages too large for their event (jetstream.ObjectStore
// satisfies it).
type Objects interface {
	PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error)
}

// Deps are a Runner's dependencies. Redis, Submitter, Credentials,
// Vendors and Keyring are required.
type Deps struct {
	Redis redis.UniversalClient
	// Prefix is the store's key prefix (config redis.prefix); the outbox
	// and the syncs live under it. Default "tokenrelay:".
	Prefix      string
	Submitter   Submitter
	Credentials Credentials
	// Vendors are the configured vendor instances, by name.
	Vendors map[string]config.Vendor
	// Keyring seals what a sync keeps in Redis (its search, cursor and
	// errors, which may name patients) and its outbox events.
	Keyring *seal.Keyring
	// Objects holds pages above InlineLimit, in the bucket named Bucket.
	// Nil: such a page fails the sync (class too_large).
	Objects Objects
	// Bucket is Objects' bucket name. Default requests.DefaultBucket.
	Bucket string
	// InlineLimit is the largest page of resources carried in its event.
	// Default requests.DefaultInlineLimit (64 KiB), as request results.
	InlineLimit int
	// MaxPages is a sync's page cap: a search with more pages fails with
	// class page_cap at its cursor. Default 10,000.
	MaxPages int
	// Overlap is how far before its mark an incremental sync asks from,
	// for changes the vendor stamped just before its clock said. Default 30s.
	Overlap time.Duration
	// TTL is how long a sync's record is kept after it ends. Default 7 days.
	TTL     time.Duration
	Metrics *Metrics
	Logger  zerolog.Logger
	// Clock defaults to time.Now; it dates records, never marks.
	Clock func() time.Time
}

// Runner starts syncs, takes their pages' answers (requests.Pages), and
// reports and cancels them.
type Runner struct {
	d      Deps
	keys   keys
	outbox string
}

var _ requests.Pages = (*Runner)(nil)

// New checks d, fills its defaults and returns a Runner.
func New(d Deps) (*Runner, error) {
	if d.Redis == nil || d.Submitter == nil || d.Credentials == nil || d.Keyring == nil {
		return nil, errors.New("syncs: a Redis client, the request submitter, the credential store and the keyring are required")
	}
	if d.Prefix == "" {
		d.Prefix = events.DefaultPrefix
	}
	if d.Bucket == "" {
		d.Bucket = requests.DefaultBucket
	}
	if d.InlineLimit <= 0 {
		d.InlineLimit = requests.DefaultInlineLimit
	}
	if d.MaxPages <= 0 {
		d.MaxPages = DefaultMaxPages
	}
	if d.Overlap <= 0 {
		d.Overlap = DefaultOverlap
	}
	if d.TTL <= 0 {
		d.TTL = DefaultTTL
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	return &Runner{d: d, keys: keys{p: d.Prefix + "sync:"}, outbox: events.OutboxKey(d.Prefix)}, nil
}

// keys names the package's Redis keys.
type keys struct{ p string }

func (k keys) sync(id string) string { return k.p + "s:" + id }
func (k keys) all() string           { return k.p + "all" }

// running is the zset of a vendor's running syncs, by when each last moved.
func (k keys) running(vendor string) string { return k.p + "running:" + vendor }

// mark is the key of the high-water mark of a credential's search: its
// resource and query, without the paging and filter parameters a run
// adds, so that "Patient?_count=50" and "Patient?_count=100" share one.
func (k keys) mark(vendor, credential, resource string, q url.Values) string {
	names := make([]string, 0, len(q))
	for name := range q {
		switch name {
		case "_count", "limit", "_lastUpdated", "updated_since":
		default:
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		vals := append([]string(nil), q[n]...)
		sort.Strings(vals)
		b.WriteString(n + "=" + strings.Join(vals, ",") + "&")
	}
	sum := sha256.Sum256(seal.Bind("sync-mark", vendor, credential, resource, b.String()))
	return k.p + "mark:" + hex.EncodeToString(sum[:16])
}

// Error codes of a refused start, as request submissions spell them.
const (
	CodeInvalid           = requests.CodeInvalid
	CodeUnknownCredential = requests.CodeUnknownCredential
	CodeDuplicate         = requests.CodeDuplicate
	CodeUnavailable       = requests.CodeUnavailable
	CodeNotFound          = "not_found"
)

// Error is why a start, status or cancel was refused.
type Error = requests.SubmitError

func invalid(format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

var (
	syncIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// ErrNotFound: no sync of that id belongs to the credential named.
	ErrNotFound = &Error{Code: CodeNotFound, Message: "no such sync of this credential"}
)

// spec is what a sync keeps of its search, sealed.
type spec struct {
	Resource string     `json:"resource"`
	Query    jobs.Query `json:"query,omitempty"`
	Mode     string     `json:"mode"`
	Batch    string     `json:"batch"`
	MarkKey  string     `json:"mark_key"`
}

// cursor is where a sync is, sealed in its record after each page.
type cursor struct {
	events.SyncCursor
	// Mark is the vendor's clock when the first page was served: the
	// search's next mark, once the sync reaches its end.
	Mark time.Time `json:"mark,omitzero"`
}

// Start validates s, records it and queues its first page; it returns the
// sync as started (id, vendor, mode and batch filled in) or an *Error,
// and starts nothing when it refuses.
func (r *Runner) Start(ctx context.Context, s jobs.Sync) (jobs.Sync, error) {
	if err := s.Check(); err != nil {
		return s, invalid("%v", err)
	}
	if s.ID == "" {
		s.ID = uuid.NewString()
	}
	if s.Mode == "" {
		s.Mode = jobs.SyncFull
	}
	if !syncIDRE.MatchString(s.ID) {
		return s, invalid("id %q must be 1 to 64 letters, digits, '_' or '-'", s.ID)
	}
	if s.Batch == "" {
		s.Batch = defaultBatch(s.ID)
	}
	if strings.ContainsAny(s.Resource, "?#") {
		return s, invalid("resource %q must not hold a query: give it in \"query\"", s.Resource)
	}
	cred, err := r.d.Credentials.CurrentToken(ctx, s.Credential)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return s, &Error{Code: CodeUnknownCredential, Message: fmt.Sprintf("no credential %q", s.Credential)}
	case err != nil:
		return s, &Error{Code: CodeUnavailable, Message: "the credential store is unavailable; try again", Err: err}
	case s.Vendor != "" && s.Vendor != cred.Vendor:
		return s, invalid("credential %q belongs to vendor %q, not %q", s.Credential, cred.Vendor, s.Vendor)
	}
	s.Vendor = cred.Vendor
	v, ok := r.d.Vendors[s.Vendor]
	if !ok {
		return s, invalid("vendor %q of credential %q is not configured", s.Vendor, s.Credential)
	}
	q := url.Values(s.Query)
	sp := spec{Resource: s.Resource, Query: s.Query, Mode: s.Mode, Batch: s.Batch,
		MarkKey: r.keys.mark(s.Vendor, s.Credential, s.Resource, q)}
	first := jobs.Request{ID: pageRequestID(s.ID, 1), Vendor: s.Vendor, Credential: s.Credential, Method: "GET",
		Path: s.Resource, Query: cloneQuery(s.Query), Batch: s.Batch, Sync: s.ID}
	if s.Mode == jobs.SyncIncremental {
		mark, err := r.mark(ctx, sp.MarkKey)
		if err != nil {
			return s, &Error{Code: CodeUnavailable, Message: "the sync store is unavailable; try again", Err: err}
		}
		if !mark.IsZero() {
			if first.Query == nil {
				first.Query = jobs.Query{}
			}
			spec, _ := v.Spec()
			name, value := spec.Since(mark.Add(-r.d.Overlap))
			first.Query[name] = []string{value}
		}
	}
	sealedSpec, err := r.seal(s.Vendor, s.Credential, s.ID, "spec", sp)
	if err != nil {
		return s, &Error{Code: CodeUnavailable, Message: "the sync could not be sealed; try again", Err: err}
	}
	now := r.d.Clock()
	res, err := scriptStart.Run(ctx, r.d.Redis, []string{r.keys.sync(s.ID), r.keys.all(), r.keys.running(s.Vendor)},
		s.ID, s.Vendor, s.Credential, s.Resource, s.Mode, s.Batch, sealedSpec, now.UnixMilli(), int64(r.d.TTL/time.Second)).Text()
	switch {
	case err != nil:
		return s, &Error{Code: CodeUnavailable, Message: "the sync store is unavailable; try again", Err: err}
	case res == "DUPLICATE":
		return s, &Error{Code: CodeDuplicate, Message: fmt.Sprintf("sync id %q is taken; give each sync an id of its own", s.ID)}
	}
	if _, err := r.d.Submitter.Submit(ctx, first); err != nil && !isDuplicate(err) {
		// (A duplicate: a start that failed after queueing its first page,
		// tried again. The page is queued: the sync runs.)
		_ = r.d.Redis.Del(context.WithoutCancel(ctx), r.keys.sync(s.ID)).Err()
		_ = r.d.Redis.ZRem(context.WithoutCancel(ctx), r.keys.all(), s.ID).Err()
		_ = r.d.Redis.ZRem(context.WithoutCancel(ctx), r.keys.running(s.Vendor), s.ID).Err()
		return s, err
	}
	r.d.Metrics.started(s.Vendor, s.Mode)
	r.d.Logger.Info().Str("sync", s.ID).Str("vendor", s.Vendor).Str("credential", s.Credential).Str("mode", s.Mode).Msg("sync started")
	return s, nil
}

func isDuplicate(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.Code == CodeDuplicate
}

// defaultBatch is a sync's batch when it names none: one of its own.
func defaultBatch(id string) string {
	if len(id) <= 59 {
		return "sync-" + id
	}
	sum := sha256.Sum256([]byte(id))
	return "sync-" + hex.EncodeToString(sum[:12])
}

// pageRequestID is the id of the request job fetching page n of a sync.
func pageRequestID(id string, n int) string { return "sync." + id + "." + strconv.Itoa(n) }

// pageOfRequest reads a page request's id.
func pageOfRequest(id, requestID string) (int, bool) {
	rest, ok := strings.CutPrefix(requestID, "sync."+id+".")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}

func cloneQuery(q jobs.Query) jobs.Query {
	if q == nil {
		return nil
	}
	out := make(jobs.Query, len(q))
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// mark reads a search's high-water mark (zero when none).
func (r *Runner) mark(ctx context.Context, key string) (time.Time, error) {
	s, err := r.d.Redis.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("syncs: read mark: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("syncs: mark %q: %w", s, err)
	}
	return t, nil
}

// seal seals v, bound to the sync and what it is.
func (r *Runner) seal(vendor, credential, id, field string, v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("syncs: encode %s of %s: %w", field, id, err)
	}
	out, err := r.d.Keyring.Seal(raw, seal.Bind("sync", vendor, credential, id, field))
	if err != nil {
		return "", fmt.Errorf("syncs: seal %s of %s: %w", field, id, err)
	}
	return out, nil
}

// open opens a sealed field of a sync into v.
func (r *Runner) open(vendor, credential, id, field, sealed string, v any) error {
	raw, err := r.d.Keyring.Open(sealed, seal.Bind("sync", vendor, credential, id, field))
	if err != nil {
		return fmt.Errorf("syncs: open %s of %s: %w", field, id, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("syncs: decode %s of %s: %w", field, id, err)
	}
	return nil
}
