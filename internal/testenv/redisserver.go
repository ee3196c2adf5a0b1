package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process of the test's own, so that a test
// can stop it and start it again (an outage, a restart) without touching
// the shared Redis. Its data survives a restart: it keeps an append-only
// file, fsynced on every write, in a directory of the test.
type RedisServer struct {
	t    testing.TB
	Port int
	dir  string
	args []string // redis-server's arguments
	cmd  *exec.Cmd
}

// StartRedisServer starts redis-server on a free port; it is killed when
// the test ends. Without redis-server installed the test is skipped, or
// fails when CI is set.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	return startRedisServer(t, func(port int, dir string) []string {
		return []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", "",
			"--logfile", filepath.Join(dir, "redis.log")}
	})
}

// startRedisServer starts redis-server on a free port with the arguments
// args returns for that port and a data directory of the test's own; it is
// killed when the test ends.
func startRedisServer(t testing.TB, args func(port int, dir string) []string) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed (scripts/ensure-services.sh installs it)")
		}
		t.Skip("redis-server is not installed")
	}
	port := FreePort(t)
	dir := t.TempDir()
	s := &RedisServer{t: t, Port: port, dir: dir, args: args(port, dir)}
	s.Start()
	t.Cleanup(func() { s.Kill() })
	return s
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Client returns a client of this server alone, closed when the test ends.
func (s *RedisServer) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// URL is the server's redis:// URL (database 0).
func (s *RedisServer) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.Port) + "/0" }

// Start starts the server (again) on its port and data directory, and
// waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("testenv: redis-server is running already")
	}
	cmd := exec.Command("redis-server", s.args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testenv: start redis-server: %v", err)
	}
	s.cmd = cmd
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("testenv: redis-server on port %d did not answer: %v\n%s", s.Port, err, log)
		}
		time.Sleep(20 * time.Millisecond) // polling a process that is starting
	}
}

// Kill stops the server at once (SIGKILL, as a crash would); what it
// acknowledged is in its append-only file. Killing a stopped server does
// nothing.
func (s *RedisServer) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// String names the server in messages.
func (s *RedisServer) String() string { return fmt.Sprintf("redis-server :%d", s.Port) }
