// Package natsinbox is the one rule every tokenrelay request/reply
// responder applies before answering: the answer goes to a reply inbox and
// nowhere else.
//
// A NATS request names its own reply subject, and a responder publishes
// its answer there with the responder's own permissions. tokenrelay
// processes may publish events (token.renewed.…, webhook.…) and call the
// JetStream API, so a request whose reply subject were "token.renewed.x.y"
// or "$JS.API.STREAM.DELETE.TOKENRELAY" would make tokenrelay publish a
// token, or a command, where the requester could not publish itself. Only
// subjects under the configured inbox prefix (DefaultPrefix, "_INBOX.", as
// nats.go's requests use) are answered; any other request is dropped and
// logged, never answered. Guard wraps a micro handler with that check.
package natsinbox

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/secret"
)

// DefaultPrefix is the inbox prefix of nats.go's requests (and of
// nats.CustomInboxPrefix("_INBOX.<name>") clients).
const DefaultPrefix = "_INBOX."

// Errors of Check, each wrapped with the reason.
var (
	// ErrNoReply is a request without a reply subject (a plain publish).
	ErrNoReply = errors.New("no reply subject")
	// ErrNotInbox is a reply subject that is not a literal subject under
	// the inbox prefix.
	ErrNotInbox = errors.New("reply subject is not an inbox")
)

// maxShown bounds how much of a refused reply subject reaches the log.
const maxShown = 64

// CheckPrefix reports whether prefix can be an inbox prefix: dot-separated
// subject tokens without wildcards or spaces, ending with ".", e.g.
// "_INBOX." or "_INBOX.tenant-a.".
func CheckPrefix(prefix string) error {
	body, ok := strings.CutSuffix(prefix, ".")
	if !ok || !literal(body) {
		return fmt.Errorf("%q is not an inbox prefix (subject tokens without spaces, * or >, ending with \".\"; e.g. %s)", Truncate(prefix), DefaultPrefix)
	}
	return nil
}

// Check returns nil when reply is a literal subject (no wildcard, space
// or empty token) under prefix with at least one token after it, and
// ErrNoReply or ErrNotInbox otherwise. prefix is trusted (see CheckPrefix).
func Check(reply, prefix string) error {
	if reply == "" {
		return ErrNoReply
	}
	rest, ok := strings.CutPrefix(reply, prefix)
	switch {
	case !ok:
		return fmt.Errorf("%w: not under %s", ErrNotInbox, prefix)
	case !literal(rest):
		return fmt.Errorf("%w: not a literal subject", ErrNotInbox)
	}
	return nil
}

// literal reports whether s is one or more dot-separated subject tokens,
// none empty, with no wildcard, space or control character.
func literal(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsFunc(tok, func(r rune) bool {
			return r == '*' || r == '>' || unicode.IsSpace(r) || !unicode.IsPrint(r)
		}) {
			return false
		}
	}
	return true
}

// Truncate cuts s to a length fit for a log line, keeping it valid UTF-8.
func Truncate(s string) string {
	return strings.ToValidUTF8(secret.Elide(s, maxShown), "?")
}

// Guard returns h behind the reply check: a request whose reply subject
// fails Check(reply, prefix) is not passed to h, not answered, and logged
// at Warn with the service name, the subject and the reply subject (both
// truncated), never the payload. prefix must pass CheckPrefix.
func Guard(service, prefix string, log zerolog.Logger, h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		if err := Check(req.Reply(), prefix); err != nil {
			log.Warn().Err(err).Str("service", service).
				Str("subject", Truncate(req.Subject())).Str("reply", Truncate(req.Reply())).
				Msg("request dropped: its reply subject is not an inbox")
			return
		}
		h.Handle(req)
	})
}
