package testenv

import (
	"net/http"
	"time"
)

// HTTPClient is a client with a transport of its own. Tests use it instead
// of http.DefaultClient: every httptest.Server.Close closes the idle
// connections of http.DefaultTransport, which can break a request of a
// parallel test that is just reusing one.
func HTTPClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
}
