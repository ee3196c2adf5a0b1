package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

// Targets of the benchmark requirement.
const (
	targetRenewals   = 2000.0
	targetRatio      = 1.0 / 3
	targetLagP99     = 250 * time.Millisecond
	targetBytesPer   = 2048.0
	flatFactor       = 2.0 // the largest size's median claim within this factor of the smallest's
	topRedisCommands = 12
)

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**FAIL**"
}

// report writes the results as Markdown; full adds the machine header.
func report(w io.Writer, r *results, full bool) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.Machine
	if full {
		p("### Run of %s", m.Date.Format("2006-01-02 15:04 MST"))
		p("")
	}
	p("Machine: %d CPUs (%s), %s RAM, Linux %s; %s (GOMAXPROCS %d); Redis %s, NATS server %s; load average at start %s.",
		m.NProc, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.GOMAXPROCS, m.RedisVersion, m.NATSVersion, m.LoadAvg)
	p("Date: %s. Command: `%s` (took %s).", m.Date.Format(time.RFC3339), r.Command, r.Took.Round(time.Second))
	p("")
	p("| Measure | Result | Target | |")
	p("|---|---|---|---|")
	if pr := r.Pipe; pr != nil {
		p("| Sustained renewals/s (%s credentials, %s window, no token expiring) | **%.0f/s** (the schedule asked %.0f/s, kept up: %s; 5 s buckets %.0f to %.0f/s; least margin left on a token %s) | ≥ %.0f/s | %s |",
			thousands(int64(pr.Credentials)), pr.Window.Round(time.Second), pr.RenewalRate, pr.Demand, yesNo(pr.keptUp()),
			pr.Rate5sMin, pr.Rate5sMax, pr.Slack.Min.Round(100*time.Millisecond),
			targetRenewals, verdict(pr.RenewalRate >= targetRenewals && pr.Gaps == 0 && pr.ExpiredAtEnd == 0))
	}
	if rr := r.Ref; rr != nil {
		p("| Bare asynq no-op tasks/s (same run, %d server(s) × concurrency %d) | %.0f/s | reference | |", rr.Servers, rr.Concurrency, rr.ProcessRate)
		if pr := r.Pipe; pr != nil {
			ratio := pr.RenewalRate / rr.ProcessRate
			if pr.keptUp() {
				// The schedule set the rate: the ratio says nothing of capacity.
				p("| Renewals/s ÷ no-op tasks/s (steady) | %.2f, but the schedule set this rate (the pipeline kept up with it), so it is no measure of capacity: see the capacity row, or saturate the window with a shorter -lifetime; CPU %.0f µs per renewal vs %.0f µs per no-op task | ≥ 1/3 | n/a |",
					ratio, pr.CPU.cpuPerOp(pr.RenewalRate), rr.CPU.cpuPerOp(rr.ProcessRate))
			} else {
				p("| Renewals/s ÷ no-op tasks/s (steady, saturated: the schedule asked more than the pipeline did) | %.2f (1/%.1f); CPU %.0f µs per renewal vs %.0f µs per no-op task | ≥ 1/3 | %s |",
					ratio, 1/ratio, pr.CPU.cpuPerOp(pr.RenewalRate), rr.CPU.cpuPerOp(rr.ProcessRate), verdict(ratio >= targetRatio))
			}
		}
		if c := r.Cap; c != nil {
			ratio := c.Rate / rr.ProcessRate
			p("| Renewals/s ÷ no-op tasks/s (capacity: all %s due at once) | %.0f/s: %.2f (1/%.1f) | ≥ 1/3 | %s |",
				thousands(int64(c.Credentials)), c.Rate, ratio, 1/ratio, verdict(ratio >= targetRatio))
		}
	} else if c := r.Cap; c != nil {
		p("| Capacity: all %s due at once | %.0f renewals/s | | |", thousands(int64(c.Credentials)), c.Rate)
	}
	if rows := r.SchedCost; len(rows) > 0 {
		var parts []string
		for _, row := range rows {
			parts = append(parts, fmt.Sprintf("%s: %s / %s", shortCount(row.Credentials), us(row.Claim.P50), us(row.Claim.P99)))
		}
		first, last := rows[0], rows[len(rows)-1]
		flat := float64(last.Claim.P50) <= flatFactor*float64(first.Claim.P50)
		p("| Scheduler cost to find due work: ClaimDue of %d due, p50 / p99 | %s | flat | %s |",
			first.Due, strings.Join(parts, "; "), verdict(flat))
	}
	if pr := r.Pipe; pr != nil && pr.Memory != nil {
		per := pr.Memory.PerCredential()
		p("| Redis memory per credential | **%.0f B** (used_memory delta: %.0f B) | ≤ %.0f B | %s |",
			per, float64(pr.Memory.UsedMemoryDelta)/float64(pr.Memory.Credentials), targetBytesPer, verdict(per <= targetBytesPer))
	}
	if pr := r.Pipe; pr != nil {
		p("| Outbox → JetStream lag p50 / p99 / max | %s / **%s** / %s (%s events) | p99 < %s | %s |",
			ms(pr.Lag.P50), ms(pr.Lag.P99), ms(pr.Lag.Max), thousands(int64(pr.Lag.N)), ms(targetLagP99), verdict(pr.Lag.P99 < targetLagP99))
	}
	if k := r.K; k != nil {
		for _, kk := range kValues(k) {
			x := findRow(k, kk, modeXOAuth2Halaxy)
			t := findRow(k, kk, modeTokenrelay)
			p("| Token-endpoint calls/h, K=%d services on one credential: own x/oauth2 vs tokenrelay | %.1f (%.0f 401s/h) vs %.1f (%.0f 401s/h) | | |",
				kk, float64(x.TokenCalls)/k.Hours, float64(x.Unauthorized)/k.Hours, float64(t.TokenCalls)/k.Hours, float64(t.Unauthorized)/k.Hours)
		}
	}
	if pr := r.Pipe; pr != nil {
		p("| Tokens that expired before their renewal (whole run) | %d renewals requested after the old token's expiry; %d of %s expired at the end of the window; %d requests with an expired token | 0 | %s |",
			pr.Gaps, pr.ExpiredAtEnd, thousands(int64(pr.Credentials)), pr.ExpiredUses, verdict(pr.Gaps == 0 && pr.ExpiredAtEnd == 0 && pr.ExpiredUses == 0))
	}
	p("")

	if rr := r.Ref; rr != nil {
		p("#### Reference: bare asynq")
		p("")
		p("%s no-op tasks enqueued on the `critical` queue of a flushed database (%d goroutines, %.0f enqueues/s), then processed by %d asynq server(s) configured as the worker is (queues critical/default/low with strict priority, concurrency %d, TaskCheckInterval %s): **%.0f tasks/s** from the first completion to the last (%s). CPU meanwhile: %s; %s.",
			thousands(int64(rr.Tasks)), refEnqueuers, rr.EnqueueRate, rr.Servers, rr.Concurrency, r.Opts.taskCheck, rr.ProcessRate, rr.Elapsed.Round(time.Millisecond), rr.CPU, rr.CPU.perOp(rr.ProcessRate))
		p("")
	}
	if pr := r.Pipe; pr != nil {
		reportPipeline(p, r, pr)
	}
	if c := r.Cap; c != nil {
		p("#### Capacity: every credential due at once")
		p("")
		p("%s credentials added with parallel upserts (%.0f/s), all due at once, tokens of 15 minutes (no second round). From the start of the schedulers and workers: %.0f token calls/s between 10%% and 90%% of them; every first token's event acked in JetStream after %s. Token calls in all: %s (one per credential: %s). Most tasks waiting in asynq: %s; most due entries not yet claimed: %s. Events: %s. Outbox lag during the flood p50 %s, p99 %s, max %s. CPU: %s; per renewal, %s.",
			thousands(int64(c.Credentials)), c.UpsertRate, c.Rate, c.AllRelayed.Round(100*time.Millisecond),
			thousands(int64(c.TokenCalls)), yesNo(c.TokenCalls == c.Credentials), thousands(c.MaxPending), thousands(c.MaxOverdue), eventCounts(c.ByType), ms(c.Lag.P50), ms(c.Lag.P99), ms(c.Lag.Max), c.CPU, c.CPU.perOp(float64(c.Credentials)/c.AllRelayed.Seconds()))
		p("")
		reportCommands(p, c.Commands, c.Credentials, "renewal")
	}
	if rows := r.Steps; len(rows) > 0 {
		reportSteps(p, r, rows)
	}
	if rows := r.SchedCost; len(rows) > 0 {
		p("#### Scheduler cost")
		p("")
		p("`store.ClaimDue(now, 1000, lease)` with %d credentials due and the rest due in 1 to 2 hours, %d timed calls per size (client-side, loopback round trip included); the server time is INFO commandstats' mean per EVALSHA. `Reconcile` walks every credential (every 30 s by default).", rows[0].Due, r.Opts.schedCalls)
		p("")
		p("| Credentials | ClaimDue p50 | p99 | server time | nothing due p50 | Reconcile (all) |")
		p("|---|---|---|---|---|---|")
		for _, row := range rows {
			p("| %s | %s | %s | %s | %s | %s |", thousands(int64(row.Credentials)), us(row.Claim.P50), us(row.Claim.P99),
				us(row.ClaimServer), us(row.Empty.P50), ms(row.Reconcile.P50))
		}
		p("")
	}
	if k := r.K; k != nil {
		reportK(p, k)
	}
}

func reportPipeline(p func(string, ...any), r *results, pr *pipelineResult) {
	p("#### Pipeline: %s credentials", thousands(int64(pr.Credentials)))
	p("")
	p("Sandbox on a loopback port (real HTTP), one Halaxy vendor whose tokens really live %s (max_token_lifetime %s; the token endpoint claims 3600 s), renewed at 2/3 of the lifetime with 10%% jitter: one renewal per credential every %s on average, so the schedule asks %.0f renewals/s. %d scheduler(s) (scheduler.New + events.NewRelay, as app.RunScheduler builds them, each on its own app.Env; %s) and %d worker(s) (app.RunWorker, concurrency %d, TaskCheckInterval %s), logs at %s level to a file.",
		pr.Lifetime, pr.Lifetime, pr.MeanInterval.Round(10*time.Millisecond), pr.Demand, pr.Schedulers, perTaskText(r.Opts.perTask), pr.Workers, pr.Concurrency, r.Opts.taskCheck, r.Opts.logLevel)
	p("")
	p("- Credentials were added at %.0f/s (took %s), so their renewals are spread over the interval as in a store that filled up over time; every credential had its first token %s after the roles started.",
		pr.SeedRate, pr.SeedTime.Round(100*time.Millisecond), pr.WarmUp.Round(100*time.Millisecond))
	p("- Steady window %s: **%s renewals** (token.renewed PubAcks counted by the relay's OnPublished), **%.0f/s**; sandbox token calls in the same window %s (%.0f/s). 5 s buckets from %.0f to %.0f/s.",
		pr.Window.Round(time.Millisecond), thousands(int64(pr.Renewals)), pr.RenewalRate, thousands(int64(pr.TokenCalls)), rate(pr.TokenCalls, pr.Window), pr.Rate5sMin, pr.Rate5sMax)
	p("- Backlog, sampled every second (max / at the end): overdue in the due index %d / %d, asynq pending %d / %d, active %d / %d, outbox %d / %d.",
		pr.BacklogMax.Overdue, pr.BacklogEnd.Overdue, pr.BacklogMax.Pending, pr.BacklogEnd.Pending, pr.BacklogMax.Active, pr.BacklogEnd.Active, pr.BacklogMax.Outbox, pr.BacklogEnd.Outbox)
	p("- Margin left on the old token when its renewal was requested (window): min %s, p50 %s; renewals requested after the old token had expired (whole run): %d.",
		pr.Slack.Min.Round(time.Millisecond), pr.Slack.P50.Round(time.Millisecond), pr.Gaps)
	p("- Credential states at the end of the window: %s; never renewed: %d; token expired: %d. Sandbox requests with an expired token: %d (nothing but the pipeline uses tokens in this phase).",
		stateCounts(pr.States), pr.NeverRenewed, pr.ExpiredAtEnd, pr.ExpiredUses)
	p("- Events in the window: %s; in the whole run: %s.%s", eventCounts(pr.WinEvents), eventCounts(pr.ByType), droppedNote(pr.Dropped))
	p("- Outbox → JetStream lag (PubAck time minus the outbox entry's id time), window: p50 %s, p99 %s, max %s.", ms(pr.Lag.P50), ms(pr.Lag.P99), ms(pr.Lag.Max))
	p("- CPU in the window (the 2 cores are shared by Redis, NATS, the benchmark process with the sandbox, schedulers and workers): %s; per renewal, %s.", pr.CPU, pr.CPU.perOp(pr.RenewalRate))
	p("")
	reportCommands(p, pr.Commands, pr.Renewals, "renewal")
	if mem := pr.Memory; mem != nil {
		p("#### Redis memory")
		p("")
		p("After the run (every credential renewed at least once, queue and outbox drained, roles stopped), by MEMORY USAGE of every key of the benchmark's database:")
		p("")
		p("| Keys | Bytes | Per credential |")
		p("|---|---|---|")
		n := float64(mem.Credentials)
		p("| %s credential hashes | %s | %.0f |", thousands(mem.CredHashCount), thousands(mem.CredHashes), float64(mem.CredHashes)/n)
		p("| due index (zset) | %s | %.0f |", thousands(mem.DueZSet), float64(mem.DueZSet)/n)
		p("| id set | %s | %.0f |", thousands(mem.CredsSet), float64(mem.CredsSet)/n)
		p("| outbox (empty) and other keys of the prefix | %s | %.0f |", thousands(mem.Outbox+mem.OtherPrefix), float64(mem.Outbox+mem.OtherPrefix)/n)
		p("| **total of the store** | **%s** | **%.0f** |", thousands(mem.CredHashes+mem.DueZSet+mem.CredsSet+mem.Outbox+mem.OtherPrefix), mem.PerCredential())
		p("| asynq keys left (%d: stats, server info), counted apart | %s | |", mem.AsynqKeys, thousands(mem.Asynq))
		p("")
		p("One credential hash (`%s`): MEMORY USAGE %d B, encoding `%s`, %d fields holding %d B of names and values. Fields longer than hash-max-listpack-value (%s B): %s. INFO used_memory grew by %s B over the run (%.0f B per credential; server-wide, so it also counts the Lua script cache, client buffers and anything else on this Redis).",
			mem.SampleKey, mem.SampleUsage, mem.SampleEncoding, mem.SampleFields, mem.SampleBytes, mem.ListpackValue,
			strings.Join(orNone(mem.LongFields), ", "), thousands(mem.UsedMemoryDelta), float64(mem.UsedMemoryDelta)/n)
		p("")
	}
}

func reportCommands(p func(string, ...any), cmds []benchdb.CmdStat, per int, unit string) {
	if len(cmds) == 0 || per == 0 {
		return
	}
	var total int64
	for _, c := range cmds {
		if c.Name != "evalsha" && c.Name != "eval" {
			total += c.Usec
		}
	}
	p("Redis commands over the same span (INFO commandstats; commands run by Lua scripts are counted under their own names and inside EVALSHA's time; the server is shared, so a `make test` running meanwhile would show up):")
	p("")
	p("| Command | Calls per %s | µs per call | µs per %s |", unit, unit)
	p("|---|---|---|---|")
	for i, c := range cmds {
		if i >= topRedisCommands {
			break
		}
		p("| %s | %.2f | %.1f | %.1f |", c.Name, float64(c.Calls)/float64(per), float64(c.Usec)/float64(c.Calls), float64(c.Usec)/float64(per))
	}
	p("")
}

func reportK(p func(string, ...any), k *kResult) {
	p("#### K services sharing one credential")
	p("")
	p("Time compressed %.0f×: %.1f simulated hours (%s of wall time). The sandbox's Halaxy token endpoint claims `expires_in` %s while its tokens die after %s (simulated; %s and %s of wall time); its generic OAuth2 endpoint tells the truth (%s). Every service sends GET Patient every %s (simulated) with the token its source gives it and counts the answers; the token calls are the sandbox's count for the credential's client id over the span.",
		k.Scale, k.Hours, time.Duration(k.Hours*float64(time.Hour)/k.Scale).Round(time.Second), k.Claimed, k.RealLifetime,
		time.Duration(float64(k.Claimed)/k.Scale), time.Duration(float64(k.RealLifetime)/k.Scale), k.RealLifetime, k.Every)
	p("")
	p("- **%s**: each service has its own `clientcredentials.Config` token source (x/oauth2's reuse with its 10 s early expiry, scaled) against Halaxy's token endpoint, through a RoundTripper that turns the form-encoded request into the JSON Halaxy wants and adds its Accept and User-Agent headers. x/oauth2 believes expires_in.", modeXOAuth2Halaxy)
	p("- **%s**: the same against the sandbox's generic OAuth2 endpoint (`/oauth2/token`, form-encoded, HTTP Basic), which says 15 minutes: how x/oauth2 fares when the vendor does not lie. (The sandbox's generic endpoint has no claimed-3600 quirk, hence the Halaxy row above.)", modeXOAuth2Honest)
	p("- **%s**: each service has a `client.NewTokenSource` over its own NATS connection; one tokenrelay scheduler and worker (app.RunScheduler, app.RunWorker) manage the credential (max_token_lifetime 15 minutes, renewed at 2/3 with 10%% jitter).", modeTokenrelay)
	p("")
	p("| K | Token source | Token calls/h | Requests/h | 401s/h | 401 share | Token errors |")
	p("|---|---|---|---|---|---|---|")
	for _, row := range k.Rows {
		share := 0.0
		if row.Requests > 0 {
			share = float64(row.Unauthorized) / float64(row.Requests) * 100
		}
		p("| %d | %s | %.1f | %.0f | %.0f | %.1f%% | %d |", row.K, row.Mode, float64(row.TokenCalls)/k.Hours,
			float64(row.Requests)/k.Hours, float64(row.Unauthorized)/k.Hours, share, row.TokenErrors)
	}
	p("")
}

func kValues(k *kResult) []int {
	var out []int
	for _, r := range k.Rows {
		if !slices.Contains(out, r.K) {
			out = append(out, r.K)
		}
	}
	return out
}

func findRow(k *kResult, kk int, mode string) kRow {
	for _, r := range k.Rows {
		if r.K == kk && r.Mode == mode {
			return r
		}
	}
	return kRow{}
}

func shortCount(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	default:
		return fmt.Sprint(n)
	}
}

func eventCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	order := []string{events.TypeTokenRenewed, events.TypeTokenRefreshFailed, events.TypeTokenExpired, events.TypeKeyRevoked}
	var parts []string
	for _, t := range order {
		if m[t] > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", t, thousands(int64(m[t]))))
		}
	}
	for t, n := range m {
		if !slices.Contains(order, t) {
			parts = append(parts, fmt.Sprintf("%s %s", t, thousands(int64(n))))
		}
	}
	return strings.Join(parts, ", ")
}

func stateCounts(m map[store.State]int) string {
	var parts []string
	for _, s := range []store.State{store.StateActive, store.StateRefreshing, store.StateFailing, store.StateExpired, store.StateRevoked} {
		parts = append(parts, fmt.Sprintf("%s %s", s, thousands(int64(m[s]))))
	}
	return strings.Join(parts, ", ")
}

func droppedNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d OnPublished calls were not counted: the collector's queue was full)", n)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orNone(s []string) []string {
	if len(s) == 0 {
		return []string{"none"}
	}
	return s
}

func reportSteps(p func(string, ...any), r *results, rows []stepRow) {
	p("#### Cost of each step of a renewal")
	p("")
	p("Each step alone on %s credentials (%d calls at a time; the worker's claim and commit take a task's renewals in one store call each, as jobs.HandleBatch does), in renewal order, the scheduler putting %s; CPU of this process, redis-server and nats-server over the step, per renewal. The token call's CPU includes the sandbox answering it (same process). Redis calls are the commands the client sends (a script counts once); script time is the server time inside EVALSHA.",
		thousands(int64(rows[0].Ops)), stepParallel, perTaskText(r.Opts.perTask))
	p("")
	p("| Step | Redis calls | of which scripts | script time µs | CPU µs: Go | Redis | NATS | total |")
	p("|---|---|---|---|---|---|---|---|")
	var sum stepRow
	var goSum, redisSum, natsSum float64
	for _, row := range rows {
		g, rd, nt := row.perOp(row.CPU.Self), row.perOp(row.CPU.Redis), row.perOp(row.CPU.NATS)
		p("| %s | %.2f | %.2f | %.1f | %.0f | %.0f | %.0f | %.0f |", row.Step, row.RedisCalls, row.Scripts, row.ScriptUsec, g, rd, nt, g+rd+nt)
		if row.Step == "store.Upsert" {
			continue // not part of a renewal
		}
		sum.RedisCalls += row.RedisCalls
		sum.Scripts += row.Scripts
		sum.ScriptUsec += row.ScriptUsec
		goSum, redisSum, natsSum = goSum+g, redisSum+rd, natsSum+nt
	}
	p("| **a renewal (all but Upsert)** | **%.2f** | **%.2f** | **%.1f** | **%.0f** | **%.0f** | **%.0f** | **%.0f** |",
		sum.RedisCalls, sum.Scripts, sum.ScriptUsec, goSum, redisSum, natsSum, goSum+redisSum+natsSum)
	p("")
}

func perTaskText(n int) string {
	if n == 0 {
		return "its default number of renewals in a refresh task"
	}
	return fmt.Sprintf("%d renewals in a refresh task", n)
}
