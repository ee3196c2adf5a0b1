package requests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// releaseModel is release.lua's round robin as it was written first, one
// request at a time: turn the ring (LMOVE head to tail), skip and drop a
// cancelled batch, take one request from the batch at the head and drop
// it once empty. It returns the ids taken in order, the ring after and
// the cancelled members.
func releaseModel(ring []string, queues map[string][]string, cancelled map[string]bool, n int) (ids, after, cancels []string) {
	ring = slices.Clone(ring)
	left := map[string]int{}
	for m, q := range queues {
		left[m] = len(q)
	}
	drop := func(m string) { ring = slices.DeleteFunc(ring, func(x string) bool { return x == m }) }
	for len(ids) < n && len(ring) > 0 {
		m := ring[0]
		ring = append(ring[1:], m)
		switch {
		case cancelled[m]:
			drop(m)
			cancels = append(cancels, m)
		case left[m] == 0:
			drop(m)
		default:
			ids = append(ids, queues[m][len(queues[m])-left[m]])
			left[m]--
			if left[m] == 0 {
				drop(m)
			}
		}
	}
	return ids, ring, cancels
}

// release.lua plays the round robin on a copy of the ring and takes each
// batch's share in one LPOP: it releases the same requests in the same
// order, and leaves the same ring and cancelling set, as turning the ring
// one request at a time did, over random rings (batches with and without
// a batch id, empty, cancelled, rings longer than n and shorter).
func TestReleaseIsTheRoundRobinOfOneRequestAtATime(t *testing.T) {
	rdb, prefix := testenv.RedisPrefix(t)
	ctx := context.Background()
	k := keys{p: prefix}
	rng := rand.New(rand.NewPCG(7, 11))
	for c := range 300 {
		account := fmt.Sprintf("acct%d", c)
		members := rng.IntN(12)
		if c%25 == 0 {
			members = 250 + rng.IntN(200) // longer than one LRANGE
		}
		var ring []string
		queues := map[string][]string{}
		cancelled := map[string]bool{}
		for m := range members {
			member := fmt.Sprintf("c%db%d", c, m)
			if rng.IntN(4) == 0 {
				member = fmt.Sprintf(":v:cred%d", m) // no batch
			} else if rng.IntN(6) == 0 {
				cancelled[member] = true
				require.NoError(t, rdb.HSet(ctx, k.batchPrefix()+member, "cancel", "1").Err())
			}
			ring = append(ring, member)
			q := make([]string, rng.IntN(6)) // some empty
			for i := range q {
				q[i] = fmt.Sprintf("c%dm%di%d", c, m, i)
				item := "\x01" + string(byte(len(q[i]))) + q[i] + "rest"
				require.NoError(t, rdb.RPush(ctx, k.queue(account, member), item).Err())
			}
			queues[member] = q
		}
		if len(ring) > 0 {
			require.NoError(t, rdb.RPush(ctx, k.ring(account), anys(ring)...).Err())
		}
		n := 1 + rng.IntN(40)
		if c%7 == 0 {
			n = 256
		}
		wantIDs, wantRing, wantCancels := releaseModel(ring, queues, cancelled, n)

		items, err := scriptRelease.Run(ctx, rdb,
			[]string{k.ring(account), k.accounts(), k.pending(account), k.releasing(account), k.cancelling(), k.queued()},
			account, k.queuePrefix(account), k.batchPrefix(), n, 1000, k.requestPrefix(), 60,
		).StringSlice()
		require.NoError(t, err)
		var gotIDs []string
		for _, it := range items {
			release, item, ok := strings.Cut(it, "|")
			require.True(t, ok)
			require.Equal(t, "1", release)
			require.Greater(t, len(item), 2)
			gotIDs = append(gotIDs, item[2:2+int(item[1])]) // entry.go's binary head
		}
		require.Equal(t, wantIDs, gotIDs, "case %d: ring %v, n %d", c, ring, n)
		gotRing, err := rdb.LRange(ctx, k.ring(account), 0, -1).Result()
		require.NoError(t, err)
		require.Equal(t, len(wantRing), len(gotRing), "case %d", c)
		if len(wantRing) > 0 {
			require.Equal(t, wantRing, gotRing, "case %d: the ring after", c)
		}
		for _, m := range wantCancels {
			in, err := rdb.SIsMember(ctx, k.cancelling(), k.queue(account, m)).Result()
			require.NoError(t, err)
			require.True(t, in, "case %d: cancelled %s goes to the cancelling set", c, m)
		}
		for m, q := range queues {
			rest, err := rdb.LLen(ctx, k.queue(account, m)).Result()
			require.NoError(t, err)
			taken := 0
			for _, id := range gotIDs {
				if slices.Contains(q, id) {
					taken++
				}
			}
			require.Equal(t, int64(len(q)-taken), rest, "case %d: %s keeps what was not taken", c, m)
		}
		pendingN, err := rdb.ZCard(ctx, k.pending(account)).Result()
		require.NoError(t, err)
		require.Equal(t, int64(len(gotIDs)), pendingN)
	}
}
