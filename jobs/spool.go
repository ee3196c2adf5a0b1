package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Spool keeps issued tokens that a stopping worker could not store, so
// that the next start commits them (RefreshHandler.CommitSpooled).
type Spool interface {
	// Put keeps s durably before it returns.
	Put(s Spooled) error
	// List returns what is kept, each with the name to Remove it by.
	List() ([]SpoolEntry, error)
	// Remove forgets one entry; removing one already gone is no error.
	Remove(name string) error
}

// Spooled is an issued token waiting to be committed.
type Spooled struct {
	Commit    store.RenewalCommit
	Lifetime  time.Duration
	Recovered bool
}

// SpoolEntry is one Spooled as listed, or the error it could not be read
// with (it is then left in place for an operator).
type SpoolEntry struct {
	Name    string
	Spooled Spooled
	Err     error
}

// FileSpool is a Spool in a local directory: one file per token, mode 0600,
// written to a temporary name, synced and renamed into place. The tokens
// are sealed under the master keyring, bound to the credential, vendor and
// generation they renew, which the file names in clear.
type FileSpool struct {
	dir  string
	ring *seal.Keyring
}

var _ Spool = (*FileSpool)(nil)

// spoolSuffix ends the name of every spooled token.
const spoolSuffix = ".renewal"

// NewFileSpool opens (creating it, mode 0700) the spool directory dir. It
// refuses a directory that other users may write to.
func NewFileSpool(dir string, ring *seal.Keyring) (*FileSpool, error) {
	if dir == "" || ring == nil {
		return nil, errors.New("jobs: spool needs a directory and a keyring")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("jobs: spool directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("jobs: spool directory: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("jobs: spool directory %s must be a directory no other user can write to (mode %s)", dir, fi.Mode())
	}
	probe, err := os.CreateTemp(dir, ".probe-*") // fail at start, not at shutdown
	if err != nil {
		return nil, fmt.Errorf("jobs: spool directory %s is not writable: %w", dir, err)
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	return &FileSpool{dir: dir, ring: ring}, nil
}

// spoolFile is the text of a spooled token: what binds it in clear, and
// the rest sealed.
type spoolFile struct {
	Credential string `json:"credential"`
	Vendor     string `json:"vendor"`
	Generation int64  `json:"generation"`
	Sealed     string `json:"sealed"`
}

// spoolBody is what is sealed. The secrets are revealed here on purpose:
// they leave the process only sealed.
type spoolBody struct {
	Owner        string          `json:"owner"`
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	IssuedAt     time.Time       `json:"issued_at"`
	ExpiresAt    time.Time       `json:"expires_at"`
	RefreshToken string          `json:"refresh_token,omitempty"`
	NextRefresh  time.Time       `json:"next_refresh"`
	Event        events.Envelope `json:"event"`
	Lifetime     time.Duration   `json:"lifetime"`
	Recovered    bool            `json:"recovered"`
}

func spoolAAD(id, vendor string, gen int64) []byte {
	return seal.Bind("spool", id, vendor, strconv.FormatInt(gen, 10))
}

// Put implements Spool.
func (f *FileSpool) Put(s Spooled) error {
	c := s.Commit
	t := c.Renewal.Token
	body, err := json.Marshal(spoolBody{
		Owner: c.Owner, AccessToken: t.AccessToken.Reveal(), TokenType: t.TokenType, IssuedAt: t.IssuedAt,
		ExpiresAt: t.ExpiresAt, RefreshToken: t.RefreshToken.Reveal(), NextRefresh: c.Renewal.NextRefresh,
		Event: c.Event, Lifetime: s.Lifetime, Recovered: s.Recovered,
	})
	if err != nil {
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	sealed, err := f.ring.Seal(body, spoolAAD(c.ID, c.Vendor, c.Generation))
	if err != nil {
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	text, err := json.Marshal(spoolFile{Credential: c.ID, Vendor: c.Vendor, Generation: c.Generation, Sealed: sealed})
	if err != nil {
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	// The credential id is not trusted as a file name; a random one is.
	name := uuid.NewString() + spoolSuffix
	tmp, err := os.CreateTemp(f.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // a no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	if _, err := tmp.Write(text); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(f.dir, name)); err != nil {
		return fmt.Errorf("jobs: spool %s: %w", c.ID, err)
	}
	if d, err := os.Open(f.dir); err == nil { // make the rename durable
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// List implements Spool.
func (f *FileSpool) List() ([]SpoolEntry, error) {
	des, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, fmt.Errorf("jobs: read spool: %w", err)
	}
	var out []SpoolEntry
	for _, de := range des {
		if !de.Type().IsRegular() || !strings.HasSuffix(de.Name(), spoolSuffix) {
			continue
		}
		s, err := f.read(de.Name())
		out = append(out, SpoolEntry{Name: de.Name(), Spooled: s, Err: err})
	}
	return out, nil
}

func (f *FileSpool) read(name string) (Spooled, error) {
	text, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		return Spooled{}, fmt.Errorf("jobs: read spooled %s: %w", name, err)
	}
	var sf spoolFile
	if err := json.Unmarshal(text, &sf); err != nil {
		return Spooled{}, fmt.Errorf("jobs: read spooled %s: %w", name, err)
	}
	plain, err := f.ring.Open(sf.Sealed, spoolAAD(sf.Credential, sf.Vendor, sf.Generation))
	if err != nil {
		return Spooled{}, fmt.Errorf("jobs: open spooled %s: %w", name, err)
	}
	var b spoolBody
	if err := json.Unmarshal(plain, &b); err != nil {
		return Spooled{}, fmt.Errorf("jobs: read spooled %s: %w", name, err)
	}
	return Spooled{
		Commit: store.RenewalCommit{
			ID: sf.Credential, Owner: b.Owner, Vendor: sf.Vendor, Generation: sf.Generation, Event: b.Event,
			Renewal: store.Renewal{
				Token: store.Token{AccessToken: secret.New(b.AccessToken), TokenType: b.TokenType, IssuedAt: b.IssuedAt,
					ExpiresAt: b.ExpiresAt, RefreshToken: secret.New(b.RefreshToken)},
				NextRefresh: b.NextRefresh,
			},
		},
		Lifetime: b.Lifetime, Recovered: b.Recovered,
	}, nil
}

// Remove implements Spool.
func (f *FileSpool) Remove(name string) error {
	if filepath.Base(name) != name || !strings.HasSuffix(name, spoolSuffix) {
		return fmt.Errorf("jobs: remove spooled %q: not a spool entry", name)
	}
	if err := os.Remove(filepath.Join(f.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("jobs: remove spooled %s: %w", name, err)
	}
	return nil
}

// CommitSpooled commits every token the spool holds, as commitRenewals
// does it (retrying while the store cannot be reached, dropping the stale,
// abandoning the expired), and removes each one settled. Call it at start,
// before taking tasks. It returns when all are settled, or with ctx's error
// when ctx ends first (what is left stays spooled). An entry that cannot be
// read is logged and left in place.
func (h *RefreshHandler) CommitSpooled(ctx context.Context) error {
	if h.d.Spool == nil {
		return nil
	}
	entries, err := h.d.Spool.List()
	if err != nil {
		return err
	}
	var (
		ps    []pendingRenewal
		names = map[string]string{} // spooled name by credential and owner
	)
	for _, e := range entries {
		if e.Err != nil {
			h.d.Logger.Error().Err(e.Err).Str("spooled", e.Name).Msg("spooled token unreadable; left in place")
			continue
		}
		c := e.Spooled.Commit
		ps = append(ps, pendingRenewal{
			log:    h.d.Logger.With().Str("credential", c.ID).Int64("generation", c.Generation).Str("vendor", c.Vendor).Logger(),
			commit: c, lifetime: e.Spooled.Lifetime, recovered: e.Spooled.Recovered,
		})
		names[c.ID+"\x00"+c.Owner] = e.Name
	}
	if len(ps) == 0 {
		return nil
	}
	h.d.Logger.Info().Int("tokens", len(ps)).Msg("committing the tokens spooled by a stopped worker")
	left := h.retryCommits(ctx, ps, nil)
	for _, p := range left {
		delete(names, p.commit.ID+"\x00"+p.commit.Owner)
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, h.d.Spool.Remove(name))
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("jobs: %d spooled tokens not yet committed: %w", len(left), ctx.Err()))
	}
	return errors.Join(errs...)
}
