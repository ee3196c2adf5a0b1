package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
)

func TestNewValidateRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 1, 10, 30, 0, 123456789, time.FixedZone("AEDT", 11*3600))
	data := events.TokenRenewed{
		Vendor: "halaxy-au", Credential: "clinic-42", Generation: 7,
		IssuedAt: at, ExpiresAt: at.Add(15 * time.Minute), Fingerprint: "sha256:ab12",
	}
	env, err := events.New(events.TypeTokenRenewed, "halaxy-au", "clinic-42", at, data)
	require.NoError(t, err)
	require.NoError(t, env.Validate())
	require.Equal(t, events.SpecVersion, env.SpecVersion)
	require.NotEmpty(t, env.ID)
	require.Equal(t, "tokenrelay/halaxy-au", env.Source)
	require.Equal(t, events.TypeTokenRenewed, env.Type)
	require.Equal(t, "token.renewed.halaxy-au.clinic-42", env.Subject)
	require.Equal(t, time.UTC, env.Time.Location())
	require.True(t, env.Time.Equal(at))
	require.Equal(t, "application/json", env.DataContentType)

	raw, err := json.Marshal(env)
	require.NoError(t, err)
	var back events.Envelope
	require.NoError(t, json.Unmarshal(raw, &back))
	require.NoError(t, back.Validate())
	require.Equal(t, env, back)

	var gotData events.TokenRenewed
	require.NoError(t, json.Unmarshal(back.Data, &gotData))
	require.Equal(t, data.Generation, gotData.Generation)
	require.Equal(t, data.Fingerprint, gotData.Fingerprint)
	require.True(t, data.ExpiresAt.Equal(gotData.ExpiresAt))

	other, err := events.New(events.TypeTokenRenewed, "halaxy-au", "clinic-42", at, data)
	require.NoError(t, err)
	require.NotEqual(t, env.ID, other.ID, "every event needs its own id")
}

func TestNewRejectsUnencodableData(t *testing.T) {
	t.Parallel()
	_, err := events.New(events.TypeTokenRenewed, "v", "c", time.Now(), func() {})
	require.Error(t, err)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	valid, err := events.New(events.TypeKeyRevoked, "redox-prod", "src-1", time.Now(), events.KeyRevoked{Reason: events.ReasonRevokedByVendor})
	require.NoError(t, err)
	tests := []struct {
		name   string
		mutate func(*events.Envelope)
		want   string // substring of the error; "" means valid
	}{
		{"valid", func(*events.Envelope) {}, ""},
		{"no id", func(e *events.Envelope) { e.ID = "" }, "id"},
		{"no subject", func(e *events.Envelope) { e.Subject = "" }, "subject"},
		{"no source", func(e *events.Envelope) { e.Source = "" }, "source"},
		{"no type", func(e *events.Envelope) { e.Type = "" }, "type"},
		{"no content type", func(e *events.Envelope) { e.DataContentType = "" }, "datacontenttype"},
		{"other specversion", func(e *events.Envelope) { e.SpecVersion = "0.3" }, "specversion"},
		{"no time", func(e *events.Envelope) { e.Time = time.Time{} }, "time"},
		{"data not JSON", func(e *events.Envelope) { e.Data = json.RawMessage("{") }, "JSON"},
		{"no data", func(e *events.Envelope) { e.Data = nil }, "JSON"},
		{"several missing, named in the spec's order", func(e *events.Envelope) { e.Subject, e.ID, e.Type = "", "", "" },
			"envelope lacks id, type, subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := valid
			tt.mutate(&env)
			err := env.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestNATSSubject(t *testing.T) {
	t.Parallel()
	tests := []struct{ typ, vendor, credential, want string }{
		{events.TypeTokenRenewed, "halaxy-au", "clinic-42", "token.renewed.halaxy-au.clinic-42"},
		{events.TypeKeyRevoked, "redox-prod", "src-1", "key.revoked.redox-prod.src-1"},
		{events.TypeRequestFailed, "healthsync", "acct_9", "request.failed.healthsync.acct_9"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, events.NATSSubject(tt.typ, tt.vendor, tt.credential))
	}
}
