// Package roundtrips counts a go-redis client's round trips to Redis: one
// per command sent alone, one per pipeline or transaction, each labelled by
// what it was (a Lua script by its file name under internal/*/lua, asynq's
// commands by "asynq"), for the benchmarks' "Redis round trips per job".
package roundtrips

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Counter is a redis.Hook counting round trips. Add it to every client
// whose traffic counts; calls made with a context from Skip are not counted.
type Counter struct {
	mu      sync.Mutex
	by      map[string]int64
	scripts map[string]string // sha1 -> script file name
}

// New returns a Counter that names the Lua scripts found under
// root/internal/*/lua (root: the repository, where `go run` is started).
func New(root string) *Counter {
	c := &Counter{by: map[string]int64{}, scripts: map[string]string{}}
	files, _ := filepath.Glob(filepath.Join(root, "internal", "*", "lua", "*.lua"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sum := sha1.Sum(b)
		c.scripts[hex.EncodeToString(sum[:])] = filepath.Base(filepath.Dir(filepath.Dir(f))) + "/" + filepath.Base(f)
	}
	return c
}

type skipKey struct{}

// Skip returns a context whose Redis calls the Counter does not count (the
// benchmark's own polling).
func Skip(ctx context.Context) context.Context { return context.WithValue(ctx, skipKey{}, true) }

func skipped(ctx context.Context) bool { return ctx.Value(skipKey{}) != nil }

// label names one command: a script by its file, asynq's by "asynq ".
func (c *Counter) label(cmd redis.Cmder) string {
	name := strings.ToLower(cmd.Name())
	args := cmd.Args()
	if (name == "evalsha" || name == "eval") && len(args) > 3 {
		src := fmt.Sprint(args[1])
		if name == "eval" {
			sum := sha1.Sum([]byte(src))
			src = hex.EncodeToString(sum[:])
		}
		if s, ok := c.scripts[src]; ok {
			return "script " + s
		}
		if k := fmt.Sprint(args[3]); strings.HasPrefix(k, "asynq:") {
			return "asynq script"
		}
		return "script ?"
	}
	if len(args) > 1 && strings.HasPrefix(fmt.Sprint(args[1]), "asynq:") {
		return "asynq " + name
	}
	return name
}

func (c *Counter) add(label string) {
	c.mu.Lock()
	c.by[label]++
	c.mu.Unlock()
}

// DialHook implements redis.Hook.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook: one round trip per command.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !skipped(ctx) {
			c.add(c.label(cmd))
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook: one round trip per pipeline.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !skipped(ctx) {
			names := make([]string, 0, len(cmds))
			for _, cmd := range cmds {
				if n := strings.ToLower(cmd.Name()); n != "multi" && n != "exec" {
					names = append(names, c.label(cmd))
				}
			}
			c.add("pipeline [" + strings.Join(names, ", ") + "]")
		}
		return next(ctx, cmds)
	}
}

var _ redis.Hook = (*Counter)(nil)

// Snapshot returns the counts so far and resets them.
func (c *Counter) Snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	by := c.by
	c.by = map[string]int64{}
	return Counts(by)
}

// Counts are round trips by label.
type Counts map[string]int64

// Total is the number of round trips.
func (cs Counts) Total() int64 {
	var n int64
	for _, v := range cs {
		n += v
	}
	return n
}

// Rows returns "label: per-job" lines, most first, for n jobs.
func (cs Counts) Rows(n int) []string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range cs {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	rows := make([]string, 0, len(all))
	for _, e := range all {
		rows = append(rows, fmt.Sprintf("| `%s` | %d | %.2f |", e.k, e.v, float64(e.v)/float64(n)))
	}
	return rows
}
