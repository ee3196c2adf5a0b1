package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// buildBinaries builds cmd/scheduler, cmd/worker and cmd/sandbox into dir
// with the go command, from the module the chaos program runs in.
func buildBinaries(ctx context.Context, dir string) error {
	moduleDir, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator),
		"./cmd/scheduler", "./cmd/worker", "./cmd/sandbox")
	cmd.Dir = moduleDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: go build: %w\n%s", err, out)
	}
	return nil
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("chaos: go env GOMOD: %w", err)
	}
	mod := string(out[:len(out)-1])
	if mod == "" || mod == os.DevNull {
		return "", errors.New("chaos: not inside the tokenrelay module")
	}
	return filepath.Dir(mod), nil
}

// freePort returns a loopback TCP port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("chaos: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// server is a process of ours that the run stops and starts again on the
// same port and data directory: redis-server or nats-server.
type server struct {
	name  string
	argv  []string
	log   string
	ready func(ctx context.Context) error

	mu  sync.Mutex
	cmd *exec.Cmd
}

// start starts the process and waits until ready says it answers.
func (s *server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("chaos: %s is running already", s.name)
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("chaos: %s log: %w", s.name, err)
	}
	defer logf.Close()
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start %s: %w", s.name, err)
	}
	s.cmd = cmd
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		err := s.ready(waitCtx)
		if err == nil {
			return nil
		}
		select {
		case <-waitCtx.Done():
			return fmt.Errorf("chaos: %s did not answer: %w (log %s)", s.name, err, s.log)
		case <-time.After(50 * time.Millisecond): // polling a starting process
		}
	}
}

// stop sends sig and waits for the process to end.
func (s *server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// newRedis is a redis-server on port keeping an append-only file in dir,
// fsynced on every write, so that what it acknowledged survives a SIGKILL.
func newRedis(port int, dir string) *server {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return &server{
		name: "redis-server " + addr,
		argv: []string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "always", "--save", ""},
		log: filepath.Join(dir, "redis.log"),
		ready: func(ctx context.Context) error {
			rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer rdb.Close()
			return rdb.Ping(ctx).Err()
		},
	}
}

// newNATS is a nats-server with JetStream on port, its store in dir.
func newNATS(port int, dir string) *server {
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	return &server{
		name: "nats-server " + url,
		argv: []string{natsServerPath(), "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", filepath.Join(dir, "jetstream")},
		log:  filepath.Join(dir, "nats.log"),
		ready: func(ctx context.Context) error {
			nc, err := nats.Connect(url, nats.Timeout(time.Second))
			if err != nil {
				return err
			}
			nc.Close()
			return nil
		},
	}
}

// natsServerPath is /usr/sbin/nats-server (Debian's) or one on PATH.
func natsServerPath() string {
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server"
	}
	return "nats-server"
}

// kill is one SIGKILL the run sent to a tokenrelay process.
type kill struct {
	Slot     string // "worker-2", "scheduler-1"
	Instance int    // which start of the slot it ended (1 = the first)
	At       time.Time
}

// role is one scheduler or worker slot: a binary kept running as a
// supervisor (systemd, Kubernetes) would, started again whenever it ends,
// whether it was killed or could not start (Redis down).
type role struct {
	slot    string
	argv    []string
	env     []string
	logPath string
	restart time.Duration

	mu       sync.Mutex
	cmd      *exec.Cmd
	instance int
	stopping bool
	exited   chan struct{} // closed when the supervising loop ends
	starts   int
}

// run supervises the slot until stop; it returns when the last process
// has ended.
func (r *role) run() {
	defer close(r.exited)
	for {
		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			return
		}
		logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			r.mu.Unlock()
			return
		}
		cmd := exec.Command(r.argv[0], r.argv[1:]...)
		cmd.Env = r.env
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		logf.Close()
		if err == nil {
			r.cmd = cmd
			r.instance++
			r.starts++
		}
		r.mu.Unlock()
		if err == nil {
			_ = cmd.Wait()
		}
		r.mu.Lock()
		r.cmd = nil
		stopping := r.stopping
		r.mu.Unlock()
		if stopping {
			return
		}
		time.Sleep(r.restart) // a supervisor's restart delay
	}
}

// current is the instance number of the process running now (0: none).
func (r *role) current() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.instance
}

// kill SIGKILLs the running process, if any; the supervising loop starts
// another after the restart delay.
func (r *role) kill() (kill, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.stopping {
		return kill{}, false
	}
	k := kill{Slot: r.slot, Instance: r.instance, At: time.Now()}
	_ = r.cmd.Process.Kill()
	return k, true
}

// stop ends the slot: SIGTERM (a graceful stop), and SIGKILL after grace.
func (r *role) stop(grace time.Duration) {
	r.mu.Lock()
	r.stopping = true
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	cmd := r.cmd
	r.mu.Unlock()
	select {
	case <-r.exited:
	case <-time.After(grace):
		if cmd != nil {
			_ = cmd.Process.Kill()
		}
		<-r.exited
	}
}
