package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
)

// machine describes where the benchmark ran.
type machine struct {
	Date         time.Time
	NProc        int
	CPUModel     string
	MemTotal     string
	Kernel       string
	GoVersion    string
	GOMAXPROCS   int
	RedisVersion string
	NATSVersion  string
	LoadAvg      string // at start
}

func describeMachine(ctx context.Context, rdb *redis.Client, nc *nats.Conn) machine {
	m := machine{
		Date:       time.Now().UTC(),
		NProc:      runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   "unknown",
		MemTotal:   "unknown",
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "MemTotal" {
				fields := strings.Fields(v)
				if kb, err := strconv.ParseFloat(fields[0], 64); err == nil {
					m.MemTotal = fmt.Sprintf("%.1f GiB", kb/1024/1024)
				}
				break
			}
		}
		_ = f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if info, err := benchdb.Info(ctx, rdb, "server"); err == nil {
		m.RedisVersion = info["redis_version"]
	}
	if nc != nil {
		m.NATSVersion = nc.ConnectedServerVersion()
	}
	return m
}

// cpuSnapshot is the CPU time used so far by this process, Redis and the
// NATS server, and by the whole machine.
type cpuSnapshot struct {
	at                  time.Time
	self, redis, nats   time.Duration
	machineBusy, wall   time.Duration // from /proc/stat, summed over CPUs
	haveNATS, haveMachn bool
}

// cpuShare is the CPU used over an interval, in cores (1.0 = one core busy).
type cpuShare struct {
	Self, Redis, NATS, Machine float64
	HaveNATS, HaveMachine      bool
}

func (c cpuShare) String() string {
	s := fmt.Sprintf("benchmark process %.2f, redis-server %.2f", c.Self, c.Redis)
	if c.HaveNATS {
		s += fmt.Sprintf(", nats-server %.2f", c.NATS)
	}
	if c.HaveMachine {
		others := max(c.Machine-c.Self-c.Redis-c.NATS, 0)
		s += fmt.Sprintf(", everything else %.2f (whole machine %.2f of %d)", others, c.Machine, runtime.NumCPU())
	}
	return s + " cores"
}

// perOp is the CPU time each of ratePerSec operations took, in
// microseconds: total (benchmark process + Redis + NATS) and by process.
func (c cpuShare) perOp(ratePerSec float64) string {
	if ratePerSec <= 0 {
		return "n/a"
	}
	f := func(cores float64) float64 { return cores * 1e6 / ratePerSec }
	return fmt.Sprintf("%.0f µs of CPU each (benchmark process %.0f, redis-server %.0f, nats-server %.0f)",
		f(c.Self+c.Redis+c.NATS), f(c.Self), f(c.Redis), f(c.NATS))
}

// cpuPerOp is the CPU time of the benchmark process, Redis and NATS
// together per operation, in µs.
func (c cpuShare) cpuPerOp(ratePerSec float64) float64 {
	if ratePerSec <= 0 {
		return 0
	}
	return (c.Self + c.Redis + c.NATS) * 1e6 / ratePerSec
}

func takeCPU(ctx context.Context, rdb *redis.Client) cpuSnapshot {
	s := cpuSnapshot{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if info, err := benchdb.Info(ctx, rdb, "cpu"); err == nil {
		u, _ := strconv.ParseFloat(info["used_cpu_user"], 64)
		sy, _ := strconv.ParseFloat(info["used_cpu_sys"], 64)
		s.redis = time.Duration((u + sy) * float64(time.Second))
	}
	s.nats, s.haveNATS = processCPU("nats-server")
	s.machineBusy, s.wall, s.haveMachn = machineCPU()
	return s
}

func (s cpuSnapshot) since(prev cpuSnapshot) cpuShare {
	wall := s.at.Sub(prev.at).Seconds()
	if wall <= 0 {
		return cpuShare{}
	}
	out := cpuShare{
		Self:     (s.self - prev.self).Seconds() / wall,
		Redis:    (s.redis - prev.redis).Seconds() / wall,
		NATS:     (s.nats - prev.nats).Seconds() / wall,
		HaveNATS: s.haveNATS && prev.haveNATS,
	}
	if s.haveMachn && prev.haveMachn && s.wall > prev.wall {
		out.Machine = float64(s.machineBusy-prev.machineBusy) / float64(s.wall-prev.wall) * float64(runtime.NumCPU())
		out.HaveMachine = true
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc times (100 on every Linux
// build that matters here).
const clockTicks = 100

// processCPU sums the CPU time of the processes named comm, read from
// /proc (read only).
func processCPU(comm string) (time.Duration, bool) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var total time.Duration
	found := false
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
		_, rest, ok := strings.Cut(string(stat), ") ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / clockTicks
		found = true
	}
	return total, found
}

// machineCPU reads the busy and total time of all CPUs from /proc/stat.
func machineCPU() (busy, total time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	var sum, idle int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest time is already counted in user
			break
		}
		sum += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return time.Duration(sum-idle) * time.Second / clockTicks, time.Duration(sum) * time.Second / clockTicks, true
}

// waitIdle waits up to limit for the machine to be idle (under 0.15 of a
// core busy over 3 s: this 2-core machine is shared, and whatever else runs
// takes its CPU from the pipeline) and returns how busy it was last.
func waitIdle(ctx context.Context, limit time.Duration) (float64, bool) {
	deadline := time.Now().Add(limit)
	for {
		b0, t0, ok := machineCPU()
		if !ok {
			return 0, true
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(3 * time.Second):
		}
		b1, t1, _ := machineCPU()
		busy := 0.0
		if t1 > t0 {
			busy = float64(b1-b0) / float64(t1-t0) * float64(runtime.NumCPU())
		}
		if busy < 0.15 {
			return busy, true
		}
		if time.Now().After(deadline) {
			return busy, false
		}
	}
}
