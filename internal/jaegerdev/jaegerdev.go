// Package jaegerdev builds and starts a local Jaeger (v2, all in one,
// traces in memory) on free loopback ports: OTLP over HTTP in, its UI and
// query API out. Tests (through internal/testenv), the benchmarks' -trace
// mode and `make run-traced` share it. Jaeger is built from tools/jaeger
// (its own module, so that Jaeger's dependencies stay out of tokenrelay's)
// into the user's cache the first time.
package jaegerdev

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Jaeger is a running Jaeger.
type Jaeger struct {
	// OTLPEndpoint is the OTLP/HTTP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT
	// takes it.
	OTLPEndpoint string
	// QueryURL is the base of Jaeger's UI and HTTP API (/api/traces/{id}).
	QueryURL string

	cmd    *exec.Cmd
	exited chan struct{}
	dir    string
}

// SearchURL is the address of Jaeger's trace search page.
func (j *Jaeger) SearchURL() string { return j.QueryURL + "/search" }

// Start builds Jaeger if needed (minutes, the first time) and starts it,
// waiting up to a minute for its API to answer. Stop ends it.
func Start(ctx context.Context) (*Jaeger, error) {
	bin, err := Binary(ctx)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tokenrelay-jaeger-")
	if err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	j := &Jaeger{
		OTLPEndpoint: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		QueryURL:     "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		exited:       make(chan struct{}),
		dir:          dir,
	}
	conf := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, jaegerConfig, ports[2], ports[1], ports[3], ports[0]), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	// Its output goes to a file, quoted if it fails to start.
	out, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	defer out.Close()
	output := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
	j.cmd = exec.Command(bin, "--config", "file:"+conf)
	j.cmd.Stdout, j.cmd.Stderr = out, out
	// A process group of its own: a terminal's Ctrl-C reaches only the
	// program that started Jaeger, which flushes its spans before Stop.
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := j.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	go func() { _ = j.cmd.Wait(); close(j.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(j.QueryURL + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j, nil
			}
		}
		select {
		case <-j.exited:
			err := fmt.Errorf("jaeger exited at start:\n%s", output())
			_ = os.RemoveAll(dir)
			return nil, err
		case <-ctx.Done():
			j.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("jaeger did not answer within 60 s:\n%s", output())
			j.Stop()
			return nil, err
		}
	}
}

// Stop kills Jaeger and waits for it to exit.
func (j *Jaeger) Stop() {
	_ = j.cmd.Process.Kill()
	<-j.exited
	_ = os.RemoveAll(j.dir)
}

// jaegerConfig is the whole Jaeger configuration: OTLP/HTTP in, memory
// storage, the query API; health, query gRPC and OTLP/HTTP ports in that
// order are filled in. Its own metrics are off (they would take port 8888).
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%d
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// Binary returns the path of the Jaeger binary, building it once per
// version of tools/jaeger (its go.sum names it) into the user cache.
func Binary(ctx context.Context) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	tools := filepath.Join(root, "tools", "jaeger")
	sum, err := os.ReadFile(filepath.Join(tools, "go.sum"))
	if err != nil {
		return "", fmt.Errorf("jaeger tools module: %w", err)
	}
	h := sha256.Sum256(sum)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "tokenrelay", "jaeger-"+hex.EncodeToString(h[:6]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	tmp := bin + ".building-" + strconv.Itoa(os.Getpid())
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = tools
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build jaeger (tools/jaeger): %w\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	return bin, nil
}

// moduleRoot is the directory of tokenrelay's go.mod, at or above the
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if raw, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(raw), "module github.com/tokenrelay/tokenrelay\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("jaeger: no tokenrelay go.mod above the working directory")
		}
		dir = parent
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, ln := range ls {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("jaeger: free port: %w", err)
		}
		ls = append(ls, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// Span is a span as Jaeger's API returns it.
type Span struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	ProcessID string `json:"processID"`
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	// Service is filled in from the trace's processes.
	Service string `json:"-"`
}

// Parent is the span id of the span's parent, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Trace reads a trace from Jaeger: its spans and the raw answer (to search
// it for what must not be there). A trace Jaeger does not know yet is no
// spans and no error.
func (j *Jaeger) Trace(traceID string) ([]Span, []byte, error) {
	resp, err := http.Get(j.QueryURL + "/api/traces/" + traceID)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	var body struct {
		Data []struct {
			Spans     []Span `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("jaeger: trace %s: %w", traceID, err)
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, nil, fmt.Errorf("jaeger: trace %s: %w", traceID, err)
	}
	var spans []Span
	for _, d := range body.Data {
		for _, s := range d.Spans {
			s.Service = d.Processes[s.ProcessID].ServiceName
			spans = append(spans, s)
		}
	}
	return spans, raw, nil
}
