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

// OutboxKey is the Redis key of the outbox stream under a key prefix.
func OutboxKey(prefix string) string { return prefix + "outbox" }
