package natsinbox_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/natsinbox"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reply, prefix string
		want          error
	}{
		{"_INBOX.abc", natsinbox.DefaultPrefix, nil},
		{"_INBOX.abc.12", natsinbox.DefaultPrefix, nil},
		{"_INBOX.consumer-a.abc.1", "_INBOX.consumer-a.", nil},
		{"", natsinbox.DefaultPrefix, natsinbox.ErrNoReply},
		{"_INBOX.", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOXX.abc", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_inbox.abc", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"events.x", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"token.renewed.halaxy-au.clinic-42", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"$JS.API.STREAM.DELETE.TOKENRELAY", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.>", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.*", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.a*b", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.a b", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.a\tb", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.a\r\nPUB x 1", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX..a", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.a.", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.\xff", natsinbox.DefaultPrefix, natsinbox.ErrNotInbox},
		{"_INBOX.other.abc", "_INBOX.consumer-a.", natsinbox.ErrNotInbox},
	} {
		err := natsinbox.Check(tc.reply, tc.prefix)
		if tc.want == nil {
			require.NoError(t, err, "%q under %q", tc.reply, tc.prefix)
		} else {
			require.ErrorIs(t, err, tc.want, "%q under %q", tc.reply, tc.prefix)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"_INBOX.", "_INBOX.tenant-a.", "x."} {
		require.NoError(t, natsinbox.CheckPrefix(ok), ok)
	}
	for _, bad := range []string{"", ".", "_INBOX", "_INBOX..", "_INBOX.*.", "_INBOX.>.", "a b.", "_IN\nBOX."} {
		require.Error(t, natsinbox.CheckPrefix(bad), "%q", bad)
	}
}

// fakeRequest is a micro.Request that records what the handler answers.
type fakeRequest struct {
	micro.Request // nil: any method not overridden panics
	subject       string
	reply         string
	data          []byte
}

func (r *fakeRequest) Subject() string { return r.subject }
func (r *fakeRequest) Reply() string   { return r.reply }
func (r *fakeRequest) Data() []byte    { return r.data }

func TestGuard(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var handled []string
	h := natsinbox.Guard("tokens", natsinbox.DefaultPrefix, zerolog.New(&logs), micro.HandlerFunc(func(req micro.Request) {
		handled = append(handled, req.Reply())
	}))

	h.Handle(&fakeRequest{subject: "token.get.a.b", reply: "_INBOX.ok.1"})
	long := "token.renewed." + strings.Repeat("x", 500)
	h.Handle(&fakeRequest{subject: "token.get.a.b", reply: long, data: []byte("payload-must-not-be-logged")})
	h.Handle(&fakeRequest{subject: "token.get.a.b", reply: ""})

	require.Equal(t, []string{"_INBOX.ok.1"}, handled, "only the inbox request reaches the handler")
	out := logs.String()
	require.Equal(t, 2, strings.Count(out, `"level":"warn"`), out)
	require.Contains(t, out, `"service":"tokens"`)
	require.Contains(t, out, `"subject":"token.get.a.b"`)
	require.Contains(t, out, `"reply":"token.renewed.xxx`)
	require.NotContains(t, out, strings.Repeat("x", 100), "the reply subject is truncated")
	require.NotContains(t, out, "payload-must-not-be-logged")
}

// FuzzReplySubject checks that whatever a requester names as its reply
// subject, Check passes it only when it is a literal subject strictly under
// the prefix: no wildcard, whitespace, control character or empty token,
// so a responder can never be made to publish outside the inboxes.
func FuzzReplySubject(f *testing.F) {
	for _, s := range []string{"_INBOX.abc", "_INBOX.a.b.c", "", "_INBOX.", "_INBOX.>", "_INBOX.*.x", "events.x",
		"_INBOX.a b", "_INBOX..a", "_INBOX.a.", "_INBOX.\x00", "_INBOX.\xff", "$JS.API.>", "_INBOX.a\r\nPUB x"} {
		f.Add(s, natsinbox.DefaultPrefix)
		f.Add(s, "_INBOX.a.")
	}
	f.Fuzz(func(t *testing.T, reply, prefix string) {
		if natsinbox.CheckPrefix(prefix) != nil {
			return
		}
		err := natsinbox.Check(reply, prefix)
		if err != nil {
			if !errors.Is(err, natsinbox.ErrNoReply) && !errors.Is(err, natsinbox.ErrNotInbox) {
				t.Fatalf("Check(%q, %q) = %v, not one of the sentinels", reply, prefix, err)
			}
			return
		}
		rest, ok := strings.CutPrefix(reply, prefix)
		if !ok || rest == "" {
			t.Fatalf("Check passed %q, which is not strictly under %q", reply, prefix)
		}
		for _, tok := range strings.Split(reply, ".") {
			if tok == "" || tok == "*" || tok == ">" {
				t.Fatalf("Check passed %q, which has an empty or wildcard token", reply)
			}
		}
		if !utf8.ValidString(reply) || strings.ContainsFunc(reply, func(r rune) bool {
			return r == '*' || r == '>' || unicode.IsSpace(r) || !unicode.IsPrint(r)
		}) {
			t.Fatalf("Check passed %q, which holds a wildcard, space, control or invalid character", reply)
		}
		if got := natsinbox.Truncate(reply); len(got) > 80 {
			t.Fatalf("Truncate(%q) is %d bytes", reply, len(got))
		}
	})
}
