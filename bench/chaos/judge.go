package main

import (
	"fmt"
	"slices"
	"time"
)

// renewedEvent is one token.renewed event of the stream, in stream order.
type renewedEvent struct {
	Seq        uint64
	MsgID      string // Nats-Msg-Id
	Credential string
	Generation int64
	Token      string // the token's fingerprint
	// Lead is how long before the previous token's expiry the new one was
	// issued (negative: late, the credential had no valid token a while);
	// zero for generation 1.
	Lead time.Duration
}

// finalState is a credential as the store has it at the end.
type finalState struct {
	State      string
	Generation int64
}

// evidence is everything the run recorded, for judge.
type evidence struct {
	Credentials []string
	Events      []renewedEvent
	OtherEvents map[string]int // event type -> count, token.renewed excluded
	Calls       []tokenCall
	Kills       []kill
	Final       map[string]finalState
	// VendorCalls is the sandbox's own count of token calls per client.
	VendorCalls map[string]int
	// ExcuseWindow is how long after a token call's answer its worker may
	// still hold the token uncommitted (its claim lease): a kill of that
	// worker within it excuses the call.
	ExcuseWindow time.Duration
}

// verdict is the judgement of a run.
type verdict struct {
	Renewals       int // token.renewed events
	Calls          int // token calls through the workers' proxies
	ExtraCalls     int // calls whose token never became a generation
	ExcusedCalls   int // extra calls whose worker was killed holding them
	Active         int
	Violations     []string
	MaxGeneration  int64
	MinGeneration  int64
	RevokedEvents  int
	FailedRenewals int // token.refresh_failed events
	// LateRenewals counts renewals issued after the previous token had
	// expired; MinLead is the shortest lead of a renewal (negative: the
	// latest one). Figures, not violations: such a gap means token.get
	// answers "expired", never an expired token.
	LateRenewals int
	MinLead      time.Duration
}

// judge checks the contracts of issue 12 on what a run recorded: every
// generation of every credential has exactly one token.renewed event, in
// order, with no gap, the last being the store's generation; every
// credential ends active; and every token call became a renewal, except
// calls made by a worker killed while holding them.
func judge(e evidence) verdict {
	var v verdict
	bad := func(format string, args ...any) { v.Violations = append(v.Violations, fmt.Sprintf(format, args...)) }

	byCred := map[string][]renewedEvent{}
	ids := map[string]bool{}
	committed := map[string]bool{} // token fingerprints that became a generation
	for _, ev := range e.Events {
		if ids[ev.MsgID] {
			bad("event %s (%s generation %d) is in the stream twice", ev.MsgID, ev.Credential, ev.Generation)
		}
		ids[ev.MsgID] = true
		byCred[ev.Credential] = append(byCred[ev.Credential], ev)
		committed[ev.Credential+" "+ev.Token] = true
	}
	v.Renewals = len(e.Events)
	leads := 0
	for _, ev := range e.Events {
		if ev.Generation <= 1 {
			continue
		}
		if ev.Lead <= 0 {
			v.LateRenewals++
		}
		if leads++; leads == 1 || ev.Lead < v.MinLead {
			v.MinLead = ev.Lead
		}
	}
	v.MinGeneration = -1
	for _, cred := range e.Credentials {
		evs := byCred[cred]
		fin, ok := e.Final[cred]
		if !ok {
			bad("%s: not in the store at the end", cred)
			continue
		}
		if fin.State == "active" {
			v.Active++
		} else {
			bad("%s: ends %s, not active", cred, fin.State)
		}
		for i, ev := range evs {
			if want := int64(i + 1); ev.Generation != want {
				bad("%s: event %d of the stream is generation %d, want %d (a gap, a duplicate or out of order)", cred, i+1, ev.Generation, want)
				break
			}
		}
		if got := int64(len(evs)); got != fin.Generation {
			bad("%s: %d token.renewed events for generation %d in the store", cred, got, fin.Generation)
		}
		v.MaxGeneration = max(v.MaxGeneration, fin.Generation)
		if v.MinGeneration < 0 || fin.Generation < v.MinGeneration {
			v.MinGeneration = fin.Generation
		}
	}

	// Exactly one token call per renewal: a call whose token is not a
	// generation is excused only when its worker was killed while it held
	// the renewal (during the call or before the commit).
	killsOf := map[string][]kill{}
	for _, k := range e.Kills {
		id := fmt.Sprintf("%s#%d", k.Slot, k.Instance)
		killsOf[id] = append(killsOf[id], k)
	}
	callsPer := map[string]int{}
	called := map[string]bool{} // tokens the vendor issued, by credential
	for _, c := range e.Calls {
		v.Calls++
		callsPer[c.Client]++
		called[c.Client+" "+c.Token] = true
		if c.Token != "" && committed[c.Client+" "+c.Token] {
			continue
		}
		v.ExtraCalls++
		excused := slices.ContainsFunc(killsOf[fmt.Sprintf("%s#%d", c.Slot, c.Instance)], func(k kill) bool {
			return !k.At.Before(c.Start) && !k.At.After(c.End.Add(e.ExcuseWindow))
		})
		if excused {
			v.ExcusedCalls++
			continue
		}
		bad("%s: a token call by %s#%d at %s (answer %d) became no renewal, and that worker was not killed holding it",
			c.Client, c.Slot, c.Instance, c.Start.Format("15:04:05.000"), c.Status)
	}
	for _, ev := range e.Events {
		if !called[ev.Credential+" "+ev.Token] {
			bad("%s: generation %d's token came from no recorded token call", ev.Credential, ev.Generation)
		}
	}
	for _, cred := range e.Credentials {
		if n, ok := e.VendorCalls[cred]; ok && n != callsPer[cred] {
			bad("%s: the vendor counted %d token calls, the workers' proxies %d", cred, n, callsPer[cred])
		}
	}
	v.RevokedEvents = e.OtherEvents["key.revoked"]
	v.FailedRenewals = e.OtherEvents["token.refresh_failed"]
	if v.RevokedEvents > 0 {
		bad("%d key.revoked events: no credential was revoked", v.RevokedEvents)
	}
	return v
}
