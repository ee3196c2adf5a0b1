package requests_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/requests"
)

// A submission may not pose as a sync's page: its outcome would go to
// that sync instead of an event.
func TestSubmissionMayNotSetSync(t *testing.T) {
	t.Parallel()
	_, err := requests.DecodeRequest([]byte(`{"credential":"c","method":"GET","path":"Patient","sync":"nightly","id":"sync.nightly.2"}`))
	var se *requests.SubmitError
	require.ErrorAs(t, err, &se)
	require.Equal(t, requests.CodeInvalid, se.Code)
	require.Contains(t, se.Message, "sync.start")
}
