package store

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// Every multi-step change is one Lua script, so that it is atomic and, where
// it has an event, written together with its event. The scripts live in
// lua/, each with a header saying what it takes and returns.

//go:embed lua/prelude.lua
var luaPrelude string

//go:embed lua/upsert.lua
var luaUpsert string

//go:embed lua/claim_due.lua
var luaClaimDue string

//go:embed lua/claim.lua
var luaClaim string

//go:embed lua/commit_renewal.lua
var luaCommitRenewal string

//go:embed lua/commit_failure.lua
var luaCommitFailure string

//go:embed lua/release.lua
var luaRelease string

//go:embed lua/reconcile.lua
var luaReconcile string

//go:embed lua/revoke.lua
var luaRevoke string

//go:embed lua/enable.lua
var luaEnable string

var (
	scriptUpsert        = newScript(luaUpsert)
	scriptClaimDue      = newScript(luaClaimDue)
	scriptClaim         = newScript(luaClaim)
	scriptCommitRenewal = newScript(luaCommitRenewal)
	scriptCommitFailure = newScript(luaCommitFailure)
	scriptRelease       = newScript(luaRelease)
	scriptReconcile     = newScript(luaReconcile)
	scriptRevoke        = newScript(luaRevoke)
	scriptEnable        = newScript(luaEnable)
)

func newScript(body string) *redis.Script { return redis.NewScript(luaPrelude + "\n" + body) }

// Replies of the scripts that can refuse.
const (
	replyOK       = "OK"
	replyNotFound = "NOTFOUND"
	replyStale    = "STALE"
	replyBusy     = "BUSY"
	replyRevoked  = "REVOKED"
	replyRebind   = "REBIND"
	replyDone     = "DONE"
)
