package rotation_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/secret"
)

// A step that fails with the credential's key in its message (an adapter
// quoting a vendor that echoes it) hands asynq and the log an error
// without the key, in any spelling, that still says what it wraps.
func TestRotateErrorHoldsNoKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	leak := errors.New("vendor said: " + b.oldKey + " " + url.QueryEscape(b.oldKey) + " " +
		base64.StdEncoding.EncodeToString([]byte(b.oldKey)))
	r := b.rotator(t, "worker-a", func(p rotation.Point) error {
		if p == rotation.BeforeCreate {
			return fmt.Errorf("create: %w", leak)
		}
		return nil
	})
	_, err := r.Rotate(t.Context(), credID)
	require.ErrorIs(t, err, leak)
	for _, sp := range []string{b.oldKey, url.QueryEscape(b.oldKey), base64.StdEncoding.EncodeToString([]byte(b.oldKey))} {
		require.NotContains(t, err.Error(), sp[:secret.MinRun])
	}
	require.Contains(t, err.Error(), "vendor said: "+secret.Redacted)
}
