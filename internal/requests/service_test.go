package requests_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// A submission naming a reply subject that is not an inbox is neither
// submitted nor answered: request.submit would otherwise publish its
// answer on any subject tokenrelay may publish to (an event subject), on
// the requester's say-so.
func TestServiceAnswersOnlyInboxes(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	nc, _, _ := testenv.NATS(t)
	subjects := testenv.Unique("t") + "."
	var logs testenv.Buffer
	svc, err := requests.NewService(nc, w.sub, requests.ServiceOptions{SubjectPrefix: subjects, Logger: zerolog.New(&logs)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })

	watch, err := nc.SubscribeSync(subjects + ">")
	require.NoError(t, err)
	submit := subjects + requests.SubjectSubmit
	body := func(id string) []byte {
		return []byte(`{"id":"` + id + `","credential":"clinic-1","method":"GET","path":"Patient"}`)
	}
	bad := []string{subjects + "request.completed." + vendorName + ".clinic-1", subjects + "events.x", "_INBOX.>"}
	for i, reply := range bad {
		require.NoError(t, nc.PublishRequest(submit, reply, body("bad-"+string(rune('a'+i)))))
	}
	require.NoError(t, nc.Publish(submit, body("bad-none")))

	// Handled in order: once this one is answered, the others were dealt with.
	msg, err := nc.Request(submit, body("good"), 5*time.Second)
	require.NoError(t, err)
	var acc requests.Accepted
	require.NoError(t, json.Unmarshal(msg.Data, &acc))
	require.Equal(t, requests.Accepted{ID: "good", Accepted: true}, acc)

	n, _, err := watch.Pending()
	require.NoError(t, err)
	var published []string
	for range n {
		m, err := watch.NextMsg(time.Second)
		require.NoError(t, err)
		if m.Subject != submit {
			published = append(published, m.Subject)
		}
	}
	require.Empty(t, published, "request.submit answered outside the inboxes")
	queued, err := w.rdb.SMembers(context.Background(), prefix+"req:queued").Result()
	require.NoError(t, err)
	require.Equal(t, []string{"good"}, queued, "the submission queued, and only it")
	keys, err := w.rdb.Keys(context.Background(), prefix+"*bad-*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "a dropped submission was submitted")
	out := logs.String()
	require.Equal(t, len(bad)+1, strings.Count(out, "request dropped: its reply subject is not an inbox"), out)
	require.NotContains(t, out, "Patient", "the payload is never logged")
}
