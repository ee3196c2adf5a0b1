package benchdb

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Info returns the key: value lines of one INFO section.
func Info(ctx context.Context, rdb redis.UniversalClient, section string) (map[string]string, error) {
	text, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// UsedMemory is INFO memory's used_memory (the whole server: other users
// of a shared Redis move it too).
func UsedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := Info(ctx, rdb, "memory")
	if err != nil {
		return 0, err
	}
	v, ok := info["used_memory"]
	if !ok {
		return 0, fmt.Errorf("no used_memory in INFO memory")
	}
	return strconv.ParseInt(v, 10, 64)
}

// KeyMemory sums MEMORY USAGE of every key of the database whose name
// starts with prefix ("" for all), by key Family, exactly, whatever else
// the server holds. It returns the sums by family and the total.
func KeyMemory(ctx context.Context, rdb *redis.Client, prefix string) (map[string]int64, int64, error) {
	byFamily := map[string]int64{}
	var total int64
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return nil, 0, err
		}
		cmds := make([]*redis.IntCmd, len(keys))
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.MemoryUsage(ctx, k, 0)
			}
			return nil
		}); err != nil && err != redis.Nil {
			return nil, 0, err
		}
		for i, k := range keys {
			n := cmds[i].Val()
			total += n
			byFamily[Family(k)] += n
		}
		if next == 0 {
			return byFamily, total, nil
		}
		cursor = next
	}
}

// Family is a key's name up to its second ":" (the whole name if it has
// fewer than two).
func Family(key string) string {
	parts := strings.SplitN(key, ":", 3)
	if len(parts) >= 2 {
		return parts[0] + ":" + parts[1]
	}
	return key
}

// CmdStat is one line of INFO commandstats: a command's calls and the
// server time they took.
type CmdStat struct {
	Name  string
	Calls int64
	Usec  int64
}

// CommandStats reads INFO commandstats, by command name.
func CommandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]CmdStat, error) {
	info, err := Info(ctx, rdb, "commandstats")
	if err != nil {
		return nil, err
	}
	out := make(map[string]CmdStat, len(info))
	for k, v := range info {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		s := CmdStat{Name: name}
		for kv := range strings.SplitSeq(v, ",") {
			key, val, _ := strings.Cut(kv, "=")
			switch key {
			case "calls":
				s.Calls, _ = strconv.ParseInt(val, 10, 64)
			case "usec":
				s.Usec, _ = strconv.ParseInt(val, 10, 64)
			}
		}
		out[name] = s
	}
	return out, nil
}

// DiffCommandStats is after - before for the commands called in between,
// heaviest (by server time) first.
func DiffCommandStats(before, after map[string]CmdStat) []CmdStat {
	var out []CmdStat
	for name, a := range after {
		b := before[name]
		d := CmdStat{Name: name, Calls: a.Calls - b.Calls, Usec: a.Usec - b.Usec}
		if d.Calls > 0 {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(x, y CmdStat) int { return cmp.Compare(y.Usec, x.Usec) })
	return out
}
