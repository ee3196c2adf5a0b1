package testenv

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// RunNATS starts an embedded NATS server with JetStream on 127.0.0.1, on
// port (0 or -1: any free port) with storeDir as its JetStream store. The
// caller shuts it down. Tests use StartNATS; RunNATS is for code without a
// testing.TB (examples) and for tests that stop and start servers themselves.
func RunNATS(port int, storeDir string) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  storeDir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("testenv: embedded NATS server on port %d not ready", port)
	}
	return s, nil
}

// StartNATS starts a NATS server of the test's own, as RunNATS does (port 0:
// any free port; storeDir "": a temporary directory of the test), so that it
// can be stopped and started again without touching the shared one. It is
// shut down when the test ends. It returns the server and its client URL.
func StartNATS(t testing.TB, port int, storeDir string) (*server.Server, string) {
	t.Helper()
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	s, err := RunNATS(port, storeDir)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s, "nats://127.0.0.1:" + strconv.Itoa(s.Addr().(*net.TCPAddr).Port)
}
