package devmode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

// LastEvent is the most recent event seen for one credential.
type LastEvent struct {
	Type string
	At   time.Time
	Note string // e.g. "gen 4", "server_error, retry in 1s", "revoked_by_vendor"
}

// Follower remembers the last event of every credential and counts events
// by type, from the NATS event subjects.
type Follower struct {
	mu     sync.Mutex
	last   map[string]LastEvent // by credential id
	counts map[string]int       // by event type
	subs   []*nats.Subscription
}

// Follow subscribes to every event subject under prefix (the subjects the
// stream holds, not request/reply traffic).
func Follow(nc *nats.Conn, subjectPrefix string) (*Follower, error) {
	f := &Follower{last: map[string]LastEvent{}, counts: map[string]int{}}
	for _, subject := range events.StreamSubjects(subjectPrefix) {
		sub, err := nc.Subscribe(subject, f.onMsg)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("devmode: subscribe to %s: %w", subject, err)
		}
		f.subs = append(f.subs, sub)
	}
	return f, nil
}

// Close stops following.
func (f *Follower) Close() {
	for _, sub := range f.subs {
		_ = sub.Unsubscribe()
	}
}

func (f *Follower) onMsg(m *nats.Msg) {
	var env events.Envelope
	if json.Unmarshal(m.Data, &env) != nil || env.SpecVersion != events.SpecVersion {
		return // not an envelope: nothing to show
	}
	var d struct {
		Credential string    `json:"credential"`
		Generation int64     `json:"generation"`
		Class      string    `json:"error_class"`
		Reason     string    `json:"reason"`
		RetryAt    time.Time `json:"retry_at"`
		Recovered  bool      `json:"recovered"`
	}
	_ = json.Unmarshal(env.Data, &d)
	if d.Credential == "" {
		// A vendor's event (webhook.received, polling.*): counted, but it
		// belongs to no credential's row.
		f.mu.Lock()
		f.counts[env.Type]++
		f.mu.Unlock()
		return
	}
	note := ""
	switch env.Type {
	case events.TypeTokenRenewed:
		note = fmt.Sprintf("gen %d", d.Generation)
		if d.Recovered {
			note += ", recovered"
		}
	case events.TypeTokenRefreshFailed:
		note = fmt.Sprintf("%s, retry in %s", d.Class, roundDur(time.Until(d.RetryAt)))
	case events.TypeKeyRevoked:
		note = d.Reason
	}
	f.mu.Lock()
	f.last[d.Credential] = LastEvent{Type: env.Type, At: env.Time, Note: note}
	f.counts[env.Type]++
	f.mu.Unlock()
}

// Last returns the last event of a credential.
func (f *Follower) Last(id string) (LastEvent, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.last[id]
	return e, ok
}

// Counts returns the number of events seen by type.
func (f *Follower) Counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out
}

// Render writes the live view: one row per credential with its state,
// generation, time to expiry and to the next refresh, and its last event.
func Render(w io.Writer, now time.Time, rows []store.Summary, last func(string) (LastEvent, bool), counts map[string]int, footer string) {
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	var b strings.Builder
	fmt.Fprintf(&b, "tokenrelay dev mode: %s   (Ctrl-C to stop)\n\n", now.Format("15:04:05"))
	fmt.Fprintf(&b, "%-14s %-11s %-10s %4s  %-10s %-12s %s\n", "CREDENTIAL", "VENDOR", "STATE", "GEN", "EXPIRES IN", "REFRESH IN", "LAST EVENT")
	for _, r := range rows {
		expires, refresh := "-", "-"
		if !r.ExpiresAt.IsZero() {
			expires = roundDur(r.ExpiresAt.Sub(now)).String()
			if !now.Before(r.ExpiresAt) {
				expires = "EXPIRED"
			}
		}
		if !r.NextRefresh.IsZero() && r.State != store.StateRevoked {
			refresh = roundDur(r.NextRefresh.Sub(now)).String()
			if !now.Before(r.NextRefresh) {
				refresh = "now"
			}
		}
		ev := ""
		if e, ok := last(r.ID); ok {
			ev = fmt.Sprintf("%-20s %s ago", e.Type, roundDur(now.Sub(e.At)))
			if e.Note != "" {
				ev += " (" + e.Note + ")"
			}
		}
		fmt.Fprintf(&b, "%-14s %-11s %-10s %4d  %-10s %-12s %s\n", r.ID, r.Vendor, r.State, r.Generation, expires, refresh, ev)
	}
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	b.WriteString("\nevents in JetStream so far:")
	for _, t := range types {
		fmt.Fprintf(&b, "  %s %d", t, counts[t])
	}
	b.WriteString("\n")
	if footer != "" {
		b.WriteString(footer + "\n")
	}
	_, _ = io.WriteString(w, b.String())
}

func roundDur(d time.Duration) time.Duration {
	if d < 0 {
		d = -d
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// scanAll reads every credential summary.
func scanAll(ctx context.Context, st *store.Store) ([]store.Summary, error) {
	var rows []store.Summary
	err := st.Scan(ctx, func(s store.Summary) error {
		rows = append(rows, s)
		return nil
	})
	return rows, err
}
