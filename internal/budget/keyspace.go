package budget

// The budget's Redis keys and channel, every one named here from the
// prefix.

// keys are an account's keys, in the order take.lua and observe.lua take
// them as KEYS: the window log, the used counter, the meta hash and the
// learned limit. The account is a hash tag, so that on Redis Cluster one
// script's keys share a slot.
func (b *Budget) keys(account string) []string {
	base := b.o.Prefix + "budget:{" + account + "}:"
	return []string{base + "log", base + "used", base + "meta", base + "learned"}
}

// pauseChannel is where a process announces a 429's pause to the others.
func (b *Budget) pauseChannel() string { return b.o.Prefix + "budget:paused" }

// indexKey is the sorted set of the accounts in use (see index.go).
func (b *Budget) indexKey() string { return b.o.Prefix + "budget:accounts" }
