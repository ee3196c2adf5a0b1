package requests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// A vendor's answer is in request.completed as JSON when it is JSON, and
// in base64, whole, when it is anything else (text, broken or cut JSON).
func TestCompletedEventCarriesTheBodyAsJSONOrBase64(t *testing.T) {
	t.Parallel()
	r := jobs.Request{ID: "r1", Vendor: "halaxy-au", Credential: "clinic-1"}
	kr, err := seal.NewKeyring(bytes.Repeat([]byte{7}, seal.KeySize))
	require.NoError(t, err)
	now := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	for body, wantEncoding := range map[string]string{
		`{"resourceType":"Bundle","entry":[{"name":"Jo Ann"}]}`: "json",
		`[1, 2]`:           "json",
		`"text"`:           "json",
		`{"resourceType":`: "base64",
		`plain text`:       "base64",
		"<html></html>":    "base64",
		"{\"a\":\"\xff\"}": "json", // json.Valid takes invalid UTF-8 in strings
	} {
		out, err := completedInline(context.Background(), kr, r, now, events.RequestCompleted{ID: r.ID, Status: 200, BodySize: len(body)}, []byte(body))
		require.NoError(t, err, body)
		ev := out.env
		require.Equal(t, events.TypeRequestCompleted, ev.Type)
		sealed, _ := out.sealed.([]byte)
		opened, err := events.OpenOutboxEvent(kr, ev.ID, ev.Subject, string(sealed))
		require.NoError(t, err, body)
		want, err := events.MarshalEnvelope(ev)
		require.NoError(t, err)
		require.Equal(t, string(want), string(opened), "the outbox entry is the event")
		var data struct {
			Body         json.RawMessage `json:"body"`
			BodyEncoding string          `json:"body_encoding"`
		}
		require.NoError(t, json.Unmarshal(ev.Data, &data), body)
		require.Equal(t, wantEncoding, data.BodyEncoding, body)
		if wantEncoding == "base64" {
			var s string
			require.NoError(t, json.Unmarshal(data.Body, &s))
			got, err := base64.StdEncoding.DecodeString(s)
			require.NoError(t, err)
			require.Equal(t, body, string(got))
			continue
		}
		var compact bytes.Buffer
		require.NoError(t, json.Compact(&compact, []byte(body)))
		require.Equal(t, compact.String(), string(data.Body), "the answer itself, as before")
	}
}
