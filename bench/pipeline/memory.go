package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/events"
)

// memResult is the Redis memory a run left behind, once every credential
// was renewed and the queue and outbox were drained.
type memResult struct {
	Credentials int
	// UsedMemoryDelta is INFO used_memory now minus before the run. It is
	// server-wide: anything else using this Redis meanwhile shows up in it.
	UsedMemoryDelta int64
	// By MEMORY USAGE of every key of the benchmark's database.
	CredHashes, CredsSet, DueZSet, Outbox, OtherPrefix int64
	CredHashCount                                      int64
	Asynq, Other                                       int64
	AsynqKeys, OtherKeys                               int64
	// One credential hash.
	SampleKey      string
	SampleUsage    int64
	SampleEncoding string
	SampleFields   int64
	SampleBytes    int64 // field names and values, summed
	// LongFields are the fields whose value is longer than Redis's
	// hash-max-listpack-value (ListpackValue): one of them is enough to
	// store the hash as a hash table instead of a compact listpack.
	LongFields    []string
	ListpackValue string
}

// PerCredential is what the store holds per credential, by MEMORY USAGE.
func (m *memResult) PerCredential() float64 {
	total := m.CredHashes + m.CredsSet + m.DueZSet + m.Outbox + m.OtherPrefix
	return float64(total) / float64(m.Credentials)
}

func measureMemory(ctx context.Context, rdb *redis.Client, prefix string, n int, baseline int64) (*memResult, error) {
	m := &memResult{Credentials: n}
	used, err := benchdb.UsedMemory(ctx, rdb)
	if err != nil {
		return nil, err
	}
	m.UsedMemoryDelta = used - baseline

	var keys []string
	iter := rdb.Scan(ctx, 0, "*", 2000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("memory: scan: %w", err)
	}
	for start := 0; start < len(keys); start += 1000 {
		batch := keys[start:min(start+1000, len(keys))]
		cmds := make([]*redis.IntCmd, len(batch))
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range batch {
				cmds[i] = p.MemoryUsage(ctx, k, 0)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("memory: memory usage: %w", err)
		}
		for i, k := range batch {
			b := cmds[i].Val()
			switch {
			case strings.HasPrefix(k, prefix+"cred:"):
				m.CredHashes += b
				m.CredHashCount++
				if m.SampleKey == "" {
					m.SampleKey = k
				}
			case k == prefix+"creds":
				m.CredsSet += b
			case k == prefix+"due":
				m.DueZSet += b
			case k == events.OutboxKey(prefix):
				m.Outbox += b
			case strings.HasPrefix(k, prefix):
				m.OtherPrefix += b
			case strings.HasPrefix(k, "asynq:"):
				m.Asynq += b
				m.AsynqKeys++
			default:
				m.Other += b
				m.OtherKeys++
			}
		}
	}
	if m.SampleKey != "" {
		m.SampleUsage, _ = rdb.MemoryUsage(ctx, m.SampleKey, 0).Result()
		m.SampleEncoding, _ = rdb.ObjectEncoding(ctx, m.SampleKey).Result()
		fields, err := rdb.HGetAll(ctx, m.SampleKey).Result()
		if err != nil {
			return nil, err
		}
		m.SampleFields = int64(len(fields))
		if cfg, err := rdb.ConfigGet(ctx, "hash-max-listpack-value").Result(); err == nil {
			m.ListpackValue = cfg["hash-max-listpack-value"]
		}
		limit, _ := strconv.Atoi(m.ListpackValue)
		for k, v := range fields { // lengths only: values include sealed secrets
			m.SampleBytes += int64(len(k) + len(v))
			if limit > 0 && len(v) > limit {
				m.LongFields = append(m.LongFields, fmt.Sprintf("%s (%d B)", k, len(v)))
			}
		}
		slices.Sort(m.LongFields)
	}
	return m, nil
}
