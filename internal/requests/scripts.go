package requests

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lua/submit.lua
	submitLua    string
	scriptSubmit = redis.NewScript(submitLua)

	//go:embed lua/release.lua
	releaseLua    string
	scriptRelease = redis.NewScript(releaseLua)

	//go:embed lua/transition.lua
	transitionLua    string
	scriptTransition = redis.NewScript(transitionLua)

	//go:embed lua/start.lua
	startLua    string
	scriptStart = redis.NewScript(startLua)

	//go:embed lua/requeue.lua
	requeueLua    string
	scriptRequeue = redis.NewScript(requeueLua)

	//go:embed lua/cancel.lua
	cancelLua    string
	scriptCancel = redis.NewScript(cancelLua)

	//go:embed lua/unqueue.lua
	unqueueLua    string
	scriptUnqueue = redis.NewScript(unqueueLua)
)

// keys names the Redis keys of the package under one prefix.
type keys struct{ p string }

func newKeys(storePrefix string) keys {
	if storePrefix == "" {
		storePrefix = "tokenrelay:"
	}
	return keys{p: storePrefix + "req:"}
}

func (k keys) requestPrefix() string    { return k.p + "r:" }
func (k keys) request(id string) string { return k.requestPrefix() + id }
func (k keys) batch(vendor, credential, id string) string {
	if id == "" {
		return k.p + "b:" // never written
	}
	return k.p + "b:" + scopedBatch(vendor, credential, id)
}
func (k keys) batchPrefix() string                 { return k.p + "b:" }
func (k keys) queuePrefix(account string) string   { return k.p + "q:" + account + ":" }
func (k keys) queue(account, member string) string { return k.queuePrefix(account) + member }
func (k keys) ring(account string) string          { return k.p + "ring:" + account }
func (k keys) accounts() string                    { return k.p + "accounts" }
func (k keys) pending(account string) string       { return k.p + "pending:" + account }
func (k keys) releasingPrefix() string             { return k.p + "releasing:" }
func (k keys) releasing(account string) string     { return k.releasingPrefix() + account }
func (k keys) cancelling() string                  { return k.p + "cancelling" }
func (k keys) queued() string                      { return k.p + "queued" }
func (k keys) idempotency(vendor, credential, key string) string {
	if key == "" {
		return k.p + "idem:" // never written
	}
	sum := sha256.Sum256([]byte(vendor + "\x00" + credential + "\x00" + key))
	return k.p + "idem:" + hex.EncodeToString(sum[:])
}
func (k keys) feederLease() string { return k.p + "feeder" }

// noBatch is the ring member of requests without a batch; a batch id
// cannot start with ":".
const noBatch = ":none"

// member is a request's ring member: its credential's batch, or noBatch.
func member(vendor, credential, batch string) string {
	if batch == "" {
		return noBatch
	}
	return scopedBatch(vendor, credential, batch)
}
