// Command chaos runs tokenrelay through an operator's bad day and judges
// the outcome (issue 12; make chaos). It builds the real binaries
// (cmd/scheduler, cmd/worker, cmd/sandbox) and starts, each as a process
// of its own on free loopback ports: a redis-server keeping an append-only
// file, a nats-server with JetStream, the vendor sandbox (every token
// answer delayed -token-latency, tokens really living -token-lifetime),
// -schedulers schedulers and -workers workers managing -credentials Halaxy
// credentials whose max_token_lifetime is -token-lifetime. Each worker
// reaches the sandbox through a recording proxy of its own, so that every
// token call is known to come from one worker process.
//
// For -duration it then SIGKILLs a random scheduler or worker every
// ~-kill-every (a supervisor starts it again -restart-delay later),
// SIGKILLs Redis -redis-kills times and starts it again from its
// append-only file -redis-down later, and stops NATS once for -nats-down,
// while -consumers services ask token.get for random credentials and use
// each token at the vendor at once.
//
// It then waits for every credential to be renewed again, stops the
// workers, lets the schedulers drain the outbox, and judges:
//
//   - no event lost, no generation skipped: every credential's
//     token.renewed events in the stream are generations 1, 2, ... in
//     order, each once (Nats-Msg-Id unique), up to the store's generation;
//   - no expired token served: every token.get answer's expires_at is
//     after its receipt, and the vendor accepts the token when used;
//   - every credential ends active, and none was revoked;
//   - exactly one token call per renewal: each call's token (matched by
//     fingerprint to the token.renewed events) became a generation, or the
//     worker process that made the call was SIGKILLed between the call's
//     start and the end of its claim lease after the answer (it held the
//     renewal when it died). The sandbox's own call counts must match the
//     proxies'.
//
// It prints the figures and every violation, and exits 1 if there is any.
//
// With -scenario rotation it runs instead issue 12's point 5: one
// HealthSync API-key rotation on one scheduler and two workers, the worker
// making the vendor call of each step of -kill-at SIGKILLed before the
// answer comes (the vendor completes the call), judged: after each kill
// another worker carries the rotation on within -resume, the rotation
// finishes within -resume of the last kill, the vendor ends with one live
// key (the credential's) and every other revoked, the stream holds one
// key.rotated and one key.revoked, and, for -watch-after, no second
// rotation begins (the dead workers' tasks come back from asynq then).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainRun(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainRun parses args, runs the scenario and prints the report; it
// returns the exit code.
func mainRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, scenario, ro, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	o.Out = stderr
	if scenario == "rotation" {
		rep, err := rotationCrash(ctx, o, ro)
		if err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 1
		}
		printRotationReport(stdout, rep)
		if len(rep.Violations) > 0 {
			return 1
		}
		return 0
	}
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	printReport(stdout, rep)
	if len(rep.violations()) > 0 {
		return 1
	}
	return 0
}

// fullScenario is issue 12's bad day.
func fullScenario() options {
	return options{
		Credentials: 150, Schedulers: 2, Workers: 3, Duration: 6 * time.Minute,
		TokenLifetime: 30 * time.Second, TokenLatency: 300 * time.Millisecond,
		KillEvery: 10 * time.Second, RestartDelay: time.Second,
		RedisKills: 2, RedisDown: 3 * time.Second, NATSDown: time.Minute,
		Consumers: 4, ConsumerPause: 50 * time.Millisecond, Settle: 2 * time.Minute,
	}
}

func parseFlags(args []string, out io.Writer) (options, string, rotationOptions, error) {
	o := fullScenario()
	ro := rotationOptions{KillAt: []string{stepCreate, stepVerify, stepRevoke}, Resume: time.Minute, WatchAfter: 150 * time.Second}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(out)
	scenario := fs.String("scenario", "fleet", "fleet (the bad day) or rotation (a key rotation whose workers are killed)")
	fs.DurationVar(&ro.Hold, "rotation-hold", 0, "rotation: scheduler.rotation_hold (0: the default)")
	killAt := fs.String("kill-at", strings.Join(ro.KillAt, ","), "rotation: steps whose vendor call gets its worker SIGKILLed, in order")
	fs.DurationVar(&ro.Resume, "resume", ro.Resume, "rotation: bound on carrying a rotation on after a kill")
	fs.DurationVar(&ro.WatchAfter, "watch-after", ro.WatchAfter, "rotation: how long to watch for a second rotation once it finished")
	fs.IntVar(&o.Credentials, "credentials", o.Credentials, "credentials managed")
	fs.IntVar(&o.Schedulers, "schedulers", o.Schedulers, "scheduler processes")
	fs.IntVar(&o.Workers, "workers", o.Workers, "worker processes")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of the chaos")
	fs.DurationVar(&o.TokenLifetime, "token-lifetime", o.TokenLifetime, "how long tokens really live (also max_token_lifetime)")
	fs.DurationVar(&o.TokenLatency, "token-latency", o.TokenLatency, "delay of every token answer")
	fs.DurationVar(&o.KillEvery, "kill-every", o.KillEvery, "mean time between SIGKILLs of a scheduler or worker")
	fs.DurationVar(&o.RestartDelay, "restart-delay", o.RestartDelay, "before a killed process is started again")
	fs.IntVar(&o.RedisKills, "redis-kills", o.RedisKills, "SIGKILLs of Redis")
	fs.DurationVar(&o.RedisDown, "redis-down", o.RedisDown, "before a killed Redis starts again from its append-only file")
	fs.DurationVar(&o.NATSDown, "nats-down", o.NATSDown, "how long NATS is stopped, once (0: never)")
	fs.IntVar(&o.Consumers, "consumers", o.Consumers, "token.get consumers")
	fs.DurationVar(&o.ConsumerPause, "consumer-pause", o.ConsumerPause, "pause between a consumer's requests")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "bound on the recovery after the chaos")
	fs.StringVar(&o.Bin, "bin", "", "directory of scheduler, worker and sandbox binaries built already (default: build them)")
	fs.StringVar(&o.Dir, "dir", "", "work directory kept after the run (binaries, data, logs); default a temporary one")
	if err := fs.Parse(args); err != nil {
		return o, "", ro, err
	}
	if fs.NArg() > 0 {
		return o, "", ro, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch *scenario {
	case "fleet":
	case "rotation":
		ro.KillAt = nil
		for step := range strings.SplitSeq(*killAt, ",") {
			if step = strings.TrimSpace(step); step == "" {
				continue
			}
			if step != stepCreate && step != stepVerify && step != stepRevoke {
				return o, "", ro, fmt.Errorf("-kill-at: %q is not create, verify or revoke", step)
			}
			ro.KillAt = append(ro.KillAt, step)
		}
		o.TokenLifetime = time.Hour // no renewal of the API key meanwhile
		return o, *scenario, ro, nil
	default:
		return o, "", ro, fmt.Errorf("-scenario %q: fleet or rotation", *scenario)
	}
	if o.Credentials < 1 || o.Schedulers < 1 || o.Workers < 1 || o.Consumers < 1 {
		return o, "", ro, errors.New("-credentials, -schedulers, -workers and -consumers must be at least 1")
	}
	if o.Duration <= 0 || o.TokenLifetime <= 0 || o.TokenLatency <= 0 || o.KillEvery <= 0 {
		return o, "", ro, errors.New("-duration, -token-lifetime, -token-latency and -kill-every must be positive")
	}
	return o, *scenario, ro, nil
}

// printReport writes the figures, then the violations.
func printReport(w io.Writer, r *report) {
	o, v, cs := r.Opts, r.Verdict, r.Consumers
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("## chaos run")
	p("")
	p("scenario: %d credentials (%s tokens, token answers +%s), %d schedulers, %d workers, %s of chaos",
		o.Credentials, o.TokenLifetime, o.TokenLatency, o.Schedulers, o.Workers, o.Duration)
	p("")
	p("| figure | value |")
	p("|---|---|")
	p("| SIGKILLs (scheduler / worker) | %d / %d |", r.Kills["scheduler"], r.Kills["worker"])
	p("| process restarts (kills, and starts refused while Redis was down) | %d |", r.Restarts)
	p("| Redis SIGKILLs (down, until answering from its AOF) | %d (%s) |", len(r.RedisOutages), durations(r.RedisOutages))
	p("| NATS stopped for | %s |", r.NATSOutage.Round(time.Millisecond))
	p("| renewals (token.renewed events) | %d (generations %d to %d per credential) |", v.Renewals, v.MinGeneration, v.MaxGeneration)
	p("| token calls (workers' proxies / sandbox) | %d / %d |", v.Calls, r.SandboxCalls)
	p("| calls that became no renewal (all excused: worker killed holding it) | %d (%d excused) |", v.ExtraCalls, v.ExcusedCalls)
	p("| token.refresh_failed events | %d |", v.FailedRenewals)
	p("| renewals issued after the previous token expired (shortest lead) | %d (%s) |", v.LateRenewals, v.MinLead.Round(time.Millisecond))
	p("| credentials active at the end | %d of %d |", v.Active, o.Credentials)
	p("| recovery after the chaos (every credential renewed again) | %s |", r.Recovery.Round(time.Millisecond))
	if cs != nil {
		p("| token.get requests (tokens / error answers) | %d (%d / %s) |", cs.Requests, cs.Tokens, errorKinds(cs.Errors))
		p("| token.get latency p50 / p99 / max | %s |", quantiles(cs.Latencies))
		p("| tokens served with under %s left / used just after expiry | %d / %d |", nearEnd, cs.NearEnd, cs.LateUses)
		p("| tokens used at the vendor (refused: violations below) | %d |", cs.VendorChecks)
	}
	p("| expired tokens used, as the sandbox counts them | %d |", r.SandboxExpUse)
	p("| \"issued token abandoned\" lines / error lines in the logs | %d / %d |", r.Abandoned, r.ErrorLines)
	p("| wall time | %s |", r.Wall.Round(time.Second))
	p("")
	vs := r.violations()
	if len(vs) == 0 {
		p("verdict: PASS, no violation (logs in %s)", r.Dir)
		return
	}
	p("verdict: FAIL, %d violation(s) (logs in %s):", len(vs), r.Dir)
	for i, s := range vs {
		if i == 50 {
			p("- ... and %d more", len(vs)-50)
			break
		}
		p("- %s", s)
	}
}

func durations(ds []time.Duration) string {
	s := ""
	for i, d := range ds {
		if i > 0 {
			s += ", "
		}
		s += d.Round(time.Millisecond).String()
	}
	return s
}

func errorKinds(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", k, m[k])
	}
	return s
}

func quantiles(ls []time.Duration) string {
	if len(ls) == 0 {
		return "-"
	}
	s := slices.Clone(ls)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))] }
	return fmt.Sprintf("%s / %s / %s", q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
}
