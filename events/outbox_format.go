package events

// The outbox is a Redis stream at OutboxKey(prefix). Every entry has exactly
// these three fields, written by whoever records a state change (the
// credential store does so from inside its Lua scripts, atomically with the
// change) and read by the Relay:
//
//	XADD <prefix>outbox * id <envelope id> subject <envelope subject> event <envelope JSON>
const (
	OutboxFieldID      = "id"
	OutboxFieldSubject = "subject"
	OutboxFieldEvent   = "event"
)

// DefaultPrefix is the Redis key prefix used when none is configured.
const DefaultPrefix = "tokenrelay:"

// The events package's Redis keys, all named here from the prefix.

// OutboxKey is the Redis key of the outbox stream under a key prefix.
func OutboxKey(prefix string) string { return prefix + "outbox" }

// DeadLetterKey is the Redis stream where the relay moves outbox entries it
// cannot publish (missing fields, a subject the event stream does not
// capture, a body that is not JSON or too large), so they do not block the
// entries behind them. Nothing reads it but operators.
func DeadLetterKey(prefix string) string { return OutboxKey(prefix) + ":dead" }

// RelayLeaseKey is the Redis key whose holder is the one active relay.
func RelayLeaseKey(prefix string) string { return OutboxKey(prefix) + ":lease" }
