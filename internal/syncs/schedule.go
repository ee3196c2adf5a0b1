package syncs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// CredentialScanner lists credentials (the store).
type CredentialScanner interface {
	Scan(ctx context.Context, fn func(store.Summary) error) error
}

// ScheduleOptions configure a Schedule. Starter and Credentials are required.
type ScheduleOptions struct {
	Starter     Starter
	Credentials CredentialScanner
	// Entries are the configured scheduled syncs (config syncs.scheduled).
	Entries []config.ScheduledSync
	// TickEvery is how often Run looks. Default 30s.
	TickEvery time.Duration
	Clock     func() time.Time
	Logger    zerolog.Logger
}

// Schedule starts the configured syncs, each once per interval per
// credential however many schedulers run: the sync of an interval has an
// id derived from the entry, the credential and the interval's start, and
// a sync id is started once (the second start is refused as a duplicate).
type Schedule struct{ o ScheduleOptions }

// NewSchedule checks o and returns the schedule.
func NewSchedule(o ScheduleOptions) (*Schedule, error) {
	if o.Starter == nil || o.Credentials == nil {
		return nil, errors.New("syncs: a schedule needs a starter and the credentials")
	}
	if o.TickEvery <= 0 {
		o.TickEvery = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Schedule{o: o}, nil
}

// Run ticks until ctx ends (and only then returns, even with nothing
// scheduled: the scheduler stops all its loops when one returns); a failed
// tick is logged and tried again.
func (s *Schedule) Run(ctx context.Context) error {
	if len(s.o.Entries) == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.o.TickEvery)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.o.Logger.Warn().Err(err).Msg("scheduled syncs: tick failed; trying again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick starts the syncs of the current interval not started yet.
func (s *Schedule) Tick(ctx context.Context) error {
	now := s.o.Clock()
	var all map[string][]string // vendor -> its credentials not revoked, read once a tick
	var errs []error
	for _, e := range s.o.Entries {
		creds := e.Credentials
		if len(creds) == 0 {
			if all == nil {
				var err error
				if all, err = s.credentials(ctx); err != nil {
					return err
				}
			}
			creds = all[e.Vendor]
		}
		slot := now.Truncate(time.Duration(e.Every))
		for _, cred := range creds {
			sy := jobs.Sync{ID: ScheduledID(e, cred, slot), Vendor: e.Vendor, Credential: cred, Resource: e.Resource,
				Mode: e.Mode, Batch: "scheduled-" + e.Vendor}
			if len(e.Query) > 0 {
				sy.Query = jobs.Query{}
				for k, v := range e.Query {
					sy.Query[k] = []string{v}
				}
			}
			_, err := s.o.Starter.Start(ctx, sy)
			var se *Error
			switch {
			case err == nil:
				s.o.Logger.Info().Str("sync", sy.ID).Str("vendor", e.Vendor).Str("credential", cred).Str("resource", e.Resource).Msg("scheduled sync started")
			case errors.As(err, &se) && se.Code == CodeDuplicate:
				// Started for this interval already, here or by another scheduler.
			case errors.As(err, &se) && se.Code != CodeUnavailable:
				s.o.Logger.Warn().Str("vendor", e.Vendor).Str("credential", cred).Str("error_class", se.Code).Str("error", se.Message).Msg("scheduled sync refused")
			default:
				errs = append(errs, fmt.Errorf("syncs: scheduled sync of %s/%s: %w", e.Vendor, cred, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Schedule) credentials(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	err := s.o.Credentials.Scan(ctx, func(c store.Summary) error {
		if c.State != store.StateRevoked {
			out[c.Vendor] = append(out[c.Vendor], c.ID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("syncs: list credentials: %w", err)
	}
	for _, ids := range out {
		sort.Strings(ids)
	}
	return out, nil
}

// ScheduledID is the id of the sync of entry e for credential in the
// interval starting at slot.
func ScheduledID(e config.ScheduledSync, credential string, slot time.Time) string {
	keys := make([]string, 0, len(e.Query))
	for k := range e.Query {
		keys = append(keys, k+"="+e.Query[k])
	}
	sort.Strings(keys)
	sum := sha256.Sum256([]byte(strings.Join([]string{e.Vendor, credential, e.Resource, strings.Join(keys, "&"), e.Mode,
		strconv.FormatInt(slot.UnixMilli(), 10)}, "\x00")))
	return "sched-" + hex.EncodeToString(sum[:16])
}
