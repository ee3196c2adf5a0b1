package config_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "3s", want: 3 * time.Second},
		{in: "15m", want: 15 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "100ms", want: 100 * time.Millisecond},
		{in: "90d", want: 90 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "0", want: 0},
		{in: "0d", want: 0},
		{in: "15x", wantErr: `"15x" is not a duration (use e.g. 15m, 1h, 90d)`},
		{in: "", wantErr: "is not a duration"},
		{in: "15", wantErr: "is not a duration"},
		{in: "abc", wantErr: "is not a duration"},
		{in: "1.5d", wantErr: "is not a duration"},
		{in: "1d-1h", wantErr: "is not a duration"},
		{in: "1h1d", wantErr: "is not a duration"},
		{in: "d", wantErr: "is not a duration"},
		{in: "999999999999d", wantErr: "is not a duration"},
		{in: "-5m", wantErr: `"-5m" is negative`},
		{in: "-1d", wantErr: "is negative"},
		{in: "-x", wantErr: "is not a duration"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			d, err := config.ParseDuration(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, time.Duration(d))
		})
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	require.Equal(t, "90d", config.Duration(90*24*time.Hour).String())
	require.Equal(t, "15m0s", config.Duration(15*time.Minute).String())
	require.Equal(t, "36h0m0s", config.Duration(36*time.Hour).String())
	require.Equal(t, "0s", config.Duration(0).String())

	var v struct{ D config.Duration }
	require.NoError(t, json.Unmarshal([]byte(`{"D":"2d"}`), &v))
	require.Equal(t, config.Duration(48*time.Hour), v.D)
	out, err := json.Marshal(v)
	require.NoError(t, err)
	require.JSONEq(t, `{"D":"2d"}`, string(out))
	require.Error(t, json.Unmarshal([]byte(`{"D":"-2d"}`), &v))
}
