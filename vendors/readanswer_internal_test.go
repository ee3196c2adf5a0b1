package vendors

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readAnswer reads what io.ReadAll(io.LimitReader(body, limit)) reads,
// whatever length the answer announced: shorter, longer, none, past the
// limit, and with the error of a body cut short.
func TestReadAnswerIsReadAllWithinTheLimit(t *testing.T) {
	body := strings.Repeat("0123456789", 300)
	cut := errors.New("connection reset")
	for _, tc := range []struct {
		name      string
		announced int64
		body      string
		limit     int64
		err       error
	}{
		{"as announced", int64(len(body)), body, 1 << 20, nil},
		{"empty", 0, "", 1 << 20, nil},
		{"none announced", -1, body, 1 << 20, nil},
		{"more than announced", 10, body, 1 << 20, nil},
		{"less than announced", int64(len(body)) + 100, body, 1 << 20, nil},
		{"past the limit", int64(len(body)), body, 1000, nil},
		{"more than announced past the limit", 10, body, 1000, nil},
		{"cut short", int64(len(body)), body[:100], 1 << 20, cut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open := func() io.ReadCloser {
				r := io.Reader(strings.NewReader(tc.body))
				if tc.err != nil {
					r = io.MultiReader(r, &failing{tc.err})
				}
				return io.NopCloser(r)
			}
			want, wantErr := io.ReadAll(io.LimitReader(open(), tc.limit))
			got, err := readAnswer(&http.Response{ContentLength: tc.announced, Body: open()}, tc.limit)
			require.Equal(t, wantErr, err)
			require.True(t, bytes.Equal(want, got), "got %d bytes, want %d", len(got), len(want))
			require.NotNil(t, got)
		})
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }
