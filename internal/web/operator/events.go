package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenrelay/tokenrelay/events"
)

// MaxEvents is the most events a page reads.
const MaxEvents = 1000

// knownFields are the event data fields the pages show, in this order;
// any other field is left out (events never hold secrets, and the pages
// show only what they know to be safe).
var knownFields = []string{
	"generation", "state", "reason", "error_class", "message", "attempt", "recovered",
	"issued_at", "expires_at", "expired_at", "retry_at",
	"token_fingerprint", "key_fingerprint", "old_key_fingerprint", "new_key_fingerprint",
	"id", "batch", "status", "event_type",
}

// eventRow is an event as the pages draw it.
type eventRow struct {
	Type       string
	Subject    string
	Time       time.Time
	Vendor     string
	Credential string
	Fields     []field
}

type field struct{ Name, Value string }

func eventRowOf(e events.Envelope) eventRow {
	row := eventRow{Type: e.Type, Subject: e.Subject, Time: e.Time}
	var data map[string]json.RawMessage
	if json.Unmarshal(e.Data, &data) != nil {
		return row
	}
	row.Vendor, row.Credential = scalar(data["vendor"], e.Time), scalar(data["credential"], e.Time)
	for _, name := range knownFields {
		if v := scalar(data[name], e.Time); v != "" {
			row.Fields = append(row.Fields, field{Name: name, Value: v})
		}
	}
	return row
}

// scalar renders a JSON string, number or true; anything else is "". A
// time on the day of the event (at) shows its time of day only.
func scalar(raw json.RawMessage, at time.Time) string {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return ""
	}
	switch x := v.(type) {
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			t = t.UTC()
			if y, m, d := t.Date(); at.UTC().Year() == y && at.UTC().Month() == m && at.UTC().Day() == d {
				return t.Format("15:04:05.000Z")
			}
			return t.Format("2006-01-02 15:04:05.000Z")
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		if x {
			return "true"
		}
	}
	return ""
}

type eventsPage struct {
	layout
	Configured bool
	N          int
	Type       string
	Types      []string
	Credential string
	Rows       []eventRow
	Read       int
}

// events shows the latest events, newest first; ?n= sets how many are read
// (default 100), ?type= and ?credential= filter among them.
func (p *pages) events(w http.ResponseWriter, r *http.Request) {
	l := p.layout(r, "Recent events", "events")
	l.Refresh = p.refreshSeconds(r)
	v := r.URL.Query()
	n, err := strconv.Atoi(v.Get("n"))
	if err != nil || n <= 0 {
		n = 100
	}
	page := eventsPage{layout: l, Configured: p.d.Events != nil, N: min(n, MaxEvents),
		Type: v.Get("type"), Credential: v.Get("credential"),
		Types: []string{events.TypeTokenRenewed, events.TypeTokenRefreshFailed, events.TypeTokenExpired,
			events.TypeKeyRotated, events.TypeKeyRevoked, events.TypeWebhookReceived,
			events.TypeRequestCompleted, events.TypeRequestFailed}}
	if p.d.Events == nil {
		p.render(w, http.StatusOK, "events.html", page)
		return
	}
	evs, err := p.d.Events.Recent(r.Context(), page.N)
	if err != nil {
		p.d.Logger.Error().Err(err).Msg("operator: read events")
		page.Error = "The event stream could not be read; this page will try again."
		p.render(w, http.StatusServiceUnavailable, "events.html", page)
		return
	}
	page.Read = len(evs)
	for _, e := range evs {
		row := eventRowOf(e)
		if (page.Type == "" || row.Type == page.Type) && (page.Credential == "" || row.Credential == page.Credential) {
			page.Rows = append(page.Rows, row)
		}
	}
	p.render(w, http.StatusOK, "events.html", page)
}

// recentFor returns up to keep of the latest events about one credential,
// among the last n of the stream.
func (p *pages) recentFor(ctx context.Context, id string, n, keep int) []eventRow {
	if p.d.Events == nil {
		return nil
	}
	evs, err := p.d.Events.Recent(ctx, n)
	if err != nil {
		p.d.Logger.Warn().Err(err).Msg("operator: read events")
		return nil
	}
	var out []eventRow
	for _, e := range evs {
		if row := eventRowOf(e); row.Credential == id {
			out = append(out, row)
			if len(out) == keep {
				break
			}
		}
	}
	return out
}

// StreamLog reads the latest events from the JetStream event stream.
type StreamLog struct {
	js     jetstream.JetStream
	stream string
}

var _ EventLog = (*StreamLog)(nil)

// NewStreamLog reads the stream named stream (events.DefaultStreamName if
// empty).
func NewStreamLog(js jetstream.JetStream, stream string) *StreamLog {
	if stream == "" {
		stream = events.DefaultStreamName
	}
	return &StreamLog{js: js, stream: stream}
}

// Recent returns up to n of the latest events, newest first: an ordered
// consumer starting n messages before the end, read up to the last message
// there was when it started. A message that is not an envelope is left
// out.
func (l *StreamLog) Recent(ctx context.Context, n int) ([]events.Envelope, error) {
	if n <= 0 {
		return nil, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return nil, fmt.Errorf("operator: event stream %s: %w", l.stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("operator: event stream %s: %w", l.stream, err)
	}
	st := info.State
	if st.Msgs == 0 {
		return nil, nil
	}
	start := st.FirstSeq
	if st.LastSeq >= uint64(n) && st.LastSeq-uint64(n)+1 > start {
		start = st.LastSeq - uint64(n) + 1
	}
	want := int(min(uint64(n), st.LastSeq-start+1, st.Msgs))
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
	})
	if err != nil {
		return nil, fmt.Errorf("operator: event stream %s: consumer: %w", l.stream, err)
	}
	wait := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = max(100*time.Millisecond, min(wait, time.Until(dl)))
	}
	batch, err := cons.Fetch(want, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, fmt.Errorf("operator: event stream %s: fetch: %w", l.stream, err)
	}
	out := make([]events.Envelope, 0, want)
	for m := range batch.Messages() {
		if meta, err := m.Metadata(); err == nil && meta.Sequence.Stream > st.LastSeq {
			continue
		}
		var e events.Envelope
		if json.Unmarshal(m.Data(), &e) != nil || e.SpecVersion != events.SpecVersion {
			continue
		}
		out = append(out, e)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("operator: event stream %s: fetch: %w", l.stream, err)
	}
	slices.Reverse(out)
	return out, nil
}
