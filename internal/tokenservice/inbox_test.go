package tokenservice_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
)

// A requester naming a reply subject that is not an inbox (an event
// subject, a look-alike of the inbox prefix, a wildcard, none at all)
// gets nothing, and nothing is published there: the token service would
// otherwise publish a token on any subject its own permissions allow.
func TestAnswersOnlyInboxes(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	var logs testenv.Buffer
	var reads atomic.Int64
	start(t, nc, prefix, func(context.Context, string) (store.Credential, error) {
		reads.Add(1)
		return active(), nil
	}, tokenservice.Options{Logger: zerolog.New(&logs)})

	watch, err := nc.SubscribeSync(prefix + ">") // every subject of this test's tenant
	require.NoError(t, err)
	lookalike, err := nc.SubscribeSync("_INBOXX." + strings.TrimSuffix(prefix, ".") + ".>")
	require.NoError(t, err)
	subject := client.TokenSubject(prefix, vendor, credential)
	bad := []string{
		client.RenewedSubject(prefix, vendor, credential), // an event subject
		prefix + "events.x",
		"_INBOXX." + prefix + "x", // starts like the prefix, is not under it
	}
	for _, reply := range bad {
		require.NoError(t, nc.PublishRequest(subject, reply, []byte("{}")))
	}
	require.NoError(t, nc.Publish(subject, nil)) // no reply subject at all

	// Requests on one subscription are handled in order: once this one is
	// answered, the ones before it have been dealt with.
	msg, err := nc.Request(subject, nil, wait)
	require.NoError(t, err)
	var reply client.TokenReply
	require.NoError(t, json.Unmarshal(msg.Data, &reply))
	require.Equal(t, "tok-7", reply.AccessToken)

	var published []string
	for _, sub := range []*nats.Subscription{watch, lookalike} {
		n, _, err := sub.Pending() // filled in order by the connection's reader
		require.NoError(t, err)
		for range n {
			m, err := sub.NextMsg(wait)
			require.NoError(t, err)
			if m.Subject != subject { // the requests themselves
				published = append(published, m.Subject)
			}
		}
	}
	require.Empty(t, published, "the token service answered outside the inboxes")
	require.EqualValues(t, 1, reads.Load(), "only the inbox request was served")
	out := logs.String()
	require.Equal(t, len(bad)+1, strings.Count(out, "request dropped: its reply subject is not an inbox"), out)
	require.NotContains(t, out, "tok-7")
}
