package syncs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// Two scheduler replicas ticking at once start a scheduled sync once per
// credential and interval; the next interval starts it again.
func TestTwoSchedulersStartAScheduledSyncOnce(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{})
	w.addCredential("clinic-2")
	clock := testenv.NewClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	entry := config.ScheduledSync{Vendor: vendorName, Resource: "Patient", Query: map[string]string{"_count": "100"},
		Mode: "incremental", Every: config.Duration(time.Hour)}
	replicas := make([]*syncs.Schedule, 2)
	for i := range replicas {
		r, err := syncs.New(syncs.Deps{Redis: w.rdb, Prefix: prefix, Submitter: w.sub, Credentials: w.store, Vendors: w.vendors, Keyring: w.kr})
		require.NoError(t, err)
		replicas[i], err = syncs.NewSchedule(syncs.ScheduleOptions{Starter: r, Credentials: w.store,
			Entries: []config.ScheduledSync{entry}, Clock: clock.Now})
		require.NoError(t, err)
	}
	tickAll := func() {
		var wg sync.WaitGroup
		for _, r := range replicas {
			wg.Go(func() { require.NoError(t, r.Tick(context.Background())) })
		}
		wg.Wait()
	}
	tickAll()
	tickAll()
	list, err := w.runner.List(context.Background(), 100)
	require.NoError(t, err)
	require.Len(t, list, 2, "one sync per credential")
	for _, s := range list {
		require.Equal(t, "incremental", s.Mode)
		require.Equal(t, syncs.ScheduledID(entry, s.Credential, clock.Now()), s.ID)
	}
	clock.Advance(30 * time.Minute)
	tickAll()
	list, err = w.runner.List(context.Background(), 100)
	require.NoError(t, err)
	require.Len(t, list, 2, "the same interval")
	clock.Advance(30 * time.Minute)
	tickAll()
	list, err = w.runner.List(context.Background(), 100)
	require.NoError(t, err)
	require.Len(t, list, 4, "the next interval")
}
