package store

// Replica acknowledgement of the writes that fence vendor calls: the one
// place where the store sends WAIT.
//
// Redis replicates asynchronously. A write the master has acknowledged can
// still be lost when the master dies and Sentinel (or a Redis Cluster)
// promotes a replica that had not received it. For most writes that is a
// retry; for a claim it is a second vendor call for the same renewal: the
// worker holding the lost claim calls the vendor, and another worker claims
// the same generation again on the promoted replica and calls it too.
// With Replication.MinAcks set, such writes are followed on the same
// connection by WAIT, and a write that too few replicas acknowledged is
// reported as an error wrapping ErrNotReplicated: the caller treats it as a
// write that may or may not have happened (as any Redis error after the
// command was sent), and does not act on it.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replication says how many replicas must acknowledge the writes that
// fence vendor calls (claims, the commit of an issued token, the steps of a
// key rotation) before the store reports them done.
type Replication struct {
	// MinAcks is how many replicas must have the write. Default 0: no
	// WAIT, the write is done when the master has it (a standalone Redis
	// has no replica to wait for).
	MinAcks int
	// Timeout bounds the wait for the replicas; a write they have not all
	// acknowledged by then fails with ErrNotReplicated. Default
	// DefaultReplicaAckTimeout. Keep it well under the Redis client's read
	// timeout (3 s by default): WAIT blocks the connection meanwhile.
	Timeout time.Duration
	// Shortfall, if set, is called with the operation's name (such as
	// "claim") each time a write fails with ErrNotReplicated, for a metric.
	Shortfall func(op string)
}

// DefaultReplicaAckTimeout is Replication.Timeout's default.
const DefaultReplicaAckTimeout = time.Second

// ErrNotReplicated: fewer replicas than Replication.MinAcks acknowledged a
// write in time. The master has it, but a failover may lose it: the caller
// must not act on it (call no vendor on a claim so reported, count no
// commit so reported as lasting); asking again later is safe.
var ErrNotReplicated = errors.New("store: write not acknowledged by enough replicas")

// The operations whose writes wait for replicas, as passed to
// Replication.Shortfall.
const (
	opClaim           = "claim"
	opCommitRenewal   = "commit_renewal"
	opBeginRotation   = "begin_rotation"
	opAdvanceRotation = "advance_rotation"
	opSwitchRotation  = "switch_rotation"
	opFinishRotation  = "finish_rotation"
)

// runAcked runs script as script.Run does and, when replicas are required,
// sends WAIT right after it in one pipeline, so that both go on one
// connection (WAIT counts the replicas that have every write of its own
// connection). The script's reply comes back as is unless too few replicas
// acknowledged: then its error wraps ErrNotReplicated.
func (s *Store) runAcked(ctx context.Context, op string, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	r := s.replication
	if r.MinAcks <= 0 {
		return script.Run(ctx, s.rdb, keys, args...)
	}
	failed := func(err error) *redis.Cmd {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	conn, err := s.connFor(ctx, keys)
	if err != nil {
		return failed(err)
	}
	// EVALSHA first, as Run does; on NOSCRIPT (a Redis that has not seen
	// the script, such as a replica just promoted) EVAL. The WAIT after a
	// NOSCRIPT covers only the connection's earlier writes; the one after
	// EVAL is the one that counts.
	cmd, wait := evalAndWait(ctx, conn, script.EvalSha, keys, args, r)
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd, wait = evalAndWait(ctx, conn, script.Eval, keys, args, r)
	}
	if cmd.Err() != nil {
		return cmd
	}
	acked, err := wait.Int64()
	switch {
	case err != nil:
		cmd.SetErr(fmt.Errorf("%w: WAIT failed: %w", ErrNotReplicated, err))
	case acked < int64(r.MinAcks):
		cmd.SetErr(fmt.Errorf("%w: %d of %d replicas acknowledged within %s", ErrNotReplicated, acked, r.MinAcks, r.Timeout))
	default:
		return cmd
	}
	if r.Shortfall != nil {
		r.Shortfall(op)
	}
	return cmd
}

// evalAndWait sends the script by eval (EvalSha or Eval) and WAIT in one
// pipeline on conn.
func evalAndWait(ctx context.Context, conn pipeliner, eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd,
	keys []string, args []any, r Replication,
) (cmd, wait *redis.Cmd) {
	// The pipeline's own error is that of its first failed command, which
	// the caller reads from cmd and wait.
	_, _ = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = eval(ctx, p, keys, args...)
		// Pipeliner has no Wait method: WAIT numreplicas timeout(ms), where
		// 0 would mean for ever.
		wait = p.Do(ctx, "WAIT", r.MinAcks, max(r.Timeout.Milliseconds(), 1))
		return nil
	})
	return cmd, wait
}

// connFor is the client whose pipeline carries a replicated write to
// keys: the store's client, or on a Redis Cluster the client of the master
// of the keys' slot (a cluster pipeline would send the keyless WAIT to a
// node of its choosing, maybe another one). A slot that moved meanwhile
// answers MOVED, an error like any other; the cluster's view is reloaded
// for the next try.
func (s *Store) connFor(ctx context.Context, keys []string) (pipeliner, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return s.rdb, nil
	}
	if len(keys) == 0 {
		return nil, errors.New("a replicated write on a Redis Cluster needs a key to find its node")
	}
	node, err := cc.MasterForKey(ctx, keys[0])
	if err != nil {
		return nil, err
	}
	return movedReloads{Client: node, cluster: cc}, nil
}

// pipeliner is what a replicated write needs of a client.
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// movedReloads is a cluster node's client whose pipelines reload the
// cluster's view when a command is answered MOVED or ASK.
type movedReloads struct {
	*redis.Client
	cluster *redis.ClusterClient
}

func (m movedReloads) Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	cmds, err := m.Client.Pipelined(ctx, fn)
	if redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") {
		m.cluster.ReloadState(ctx)
	}
	return cmds, err
}
