package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// t0 is the start of a judged run.
var t0 = time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// cleanRun is one credential renewed twice, one call each, nothing killed.
func cleanRun() evidence {
	return evidence{
		Credentials: []string{"c1"},
		Events: []renewedEvent{
			{Seq: 1, MsgID: "e1", Credential: "c1", Generation: 1, Token: "fp1"},
			{Seq: 2, MsgID: "e2", Credential: "c1", Generation: 2, Token: "fp2"},
		},
		OtherEvents: map[string]int{},
		Calls: []tokenCall{
			{Slot: "worker-1", Instance: 1, Client: "c1", Start: at(0), End: at(0.3), Status: 200, Token: "fp1"},
			{Slot: "worker-2", Instance: 1, Client: "c1", Start: at(20), End: at(20.3), Status: 200, Token: "fp2"},
		},
		Final:        map[string]finalState{"c1": {State: "active", Generation: 2}},
		VendorCalls:  map[string]int{"c1": 2},
		ExcuseWindow: 10 * time.Second,
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	extraCall := tokenCall{Slot: "worker-3", Instance: 2, Client: "c1", Start: at(19), End: at(19.3), Status: 200, Token: "fpX"}
	tests := []struct {
		name    string
		change  func(e *evidence)
		want    string // a violation containing it; "" none
		excused int
	}{
		{name: "clean run", change: func(*evidence) {}},
		{name: "lost event", want: "2 token.renewed events for generation 3", change: func(e *evidence) {
			e.Final["c1"] = finalState{State: "active", Generation: 3}
			e.Calls = append(e.Calls, tokenCall{Slot: "worker-1", Instance: 1, Client: "c1", Start: at(40), End: at(40.3), Token: "fp3"})
			e.VendorCalls["c1"] = 3
		}},
		{name: "skipped generation", want: "is generation 3, want 2", change: func(e *evidence) {
			e.Events[1].Generation = 3
			e.Final["c1"] = finalState{State: "active", Generation: 3}
		}},
		{name: "duplicate event", want: "in the stream twice", change: func(e *evidence) {
			e.Events[1].MsgID = "e1"
		}},
		{name: "not active", want: "ends revoked", change: func(e *evidence) {
			e.Final["c1"] = finalState{State: "revoked", Generation: 2}
		}},
		{name: "extra call, worker alive", want: "became no renewal", change: func(e *evidence) {
			e.Calls = append(e.Calls, extraCall)
			e.VendorCalls["c1"] = 3
		}},
		{name: "extra call, worker killed mid-call", excused: 1, change: func(e *evidence) {
			e.Calls = append(e.Calls, extraCall)
			e.VendorCalls["c1"] = 3
			e.Kills = []kill{{Slot: "worker-3", Instance: 2, At: at(19.1)}}
		}},
		{name: "extra call, worker killed before committing", excused: 1, change: func(e *evidence) {
			e.Calls = append(e.Calls, extraCall)
			e.VendorCalls["c1"] = 3
			e.Kills = []kill{{Slot: "worker-3", Instance: 2, At: at(25)}}
		}},
		{name: "extra call, worker killed long after", want: "became no renewal", change: func(e *evidence) {
			e.Calls = append(e.Calls, extraCall)
			e.VendorCalls["c1"] = 3
			e.Kills = []kill{{Slot: "worker-3", Instance: 2, At: at(40)}}
		}},
		{name: "extra call, another start of the worker killed", want: "became no renewal", change: func(e *evidence) {
			e.Calls = append(e.Calls, extraCall)
			e.VendorCalls["c1"] = 3
			e.Kills = []kill{{Slot: "worker-3", Instance: 1, At: at(19.1)}}
		}},
		{name: "call not through a worker", want: "the vendor counted 3 token calls", change: func(e *evidence) {
			e.VendorCalls["c1"] = 3
		}},
		{name: "renewal from no call", want: "came from no recorded token call", excused: 1, change: func(e *evidence) {
			e.Calls[1].Token = "other"
			e.Kills = []kill{{Slot: "worker-2", Instance: 1, At: at(20.1)}}
		}},
		{name: "revoked", want: "key.revoked", change: func(e *evidence) {
			e.OtherEvents["key.revoked"] = 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := cleanRun()
			tt.change(&e)
			v := judge(e)
			require.Equal(t, tt.excused, v.ExcusedCalls)
			if tt.want == "" {
				require.Empty(t, v.Violations)
				return
			}
			require.NotEmpty(t, v.Violations)
			require.True(t, strings.Contains(strings.Join(v.Violations, "\n"), tt.want), "violations: %q", v.Violations)
		})
	}
}
