package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Jaeger is a Jaeger (v2, all in one, traces in memory) started for one
// test: OTLP over HTTP in, its query API out.
type Jaeger struct {
	// OTLPEndpoint is the OTLP/HTTP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT
	// takes it.
	OTLPEndpoint string
	// QueryURL is the base of Jaeger's HTTP API (/api/traces/{id}).
	QueryURL string
}

// StartJaeger builds Jaeger from tools/jaeger (its own module, so that
// Jaeger's dependencies stay out of tokenrelay's) into the user's cache the
// first time, starts it on free ports and stops it when the test ends.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	ports := freePorts(t, 4)
	j := &Jaeger{
		OTLPEndpoint: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		QueryURL:     "http://127.0.0.1:" + strconv.Itoa(ports[1]),
	}
	conf := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, jaegerConfig, ports[2], ports[1], ports[3], ports[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	var out Buffer
	cmd := exec.Command(bin, "--config", "file:"+conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start jaeger: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(j.QueryURL + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j
			}
		}
		select {
		case <-exited:
			t.Fatalf("jaeger exited at start:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger did not answer within 60 s:\n%s", out.String())
		}
	}
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

// jaegerBinary returns the path of the Jaeger binary, building it once per
// version of tools/jaeger (its go.sum names it) into the user cache.
func jaegerBinary(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(root, "tools", "jaeger")
	sum, err := os.ReadFile(filepath.Join(tools, "go.sum"))
	if err != nil {
		t.Fatalf("jaeger tools module: %v", err)
	}
	h := sha256.Sum256(sum)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "tokenrelay", "jaeger-"+hex.EncodeToString(h[:6]))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := bin + ".building-" + strconv.Itoa(os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = tools
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build jaeger (tools/jaeger): %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// moduleRoot is the directory of tokenrelay's go.mod, above the test's.
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
			return "", fmt.Errorf("testenv: no tokenrelay go.mod above the working directory")
		}
		dir = parent
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range ls {
		ln.Close()
	}
	return ports
}

// JaegerSpan is a span as Jaeger's API returns it.
type JaegerSpan struct {
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
func (s JaegerSpan) Parent() string {
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
func (j *Jaeger) Trace(traceID string) ([]JaegerSpan, []byte, error) {
	resp, err := http.Get(j.QueryURL + "/api/traces/" + traceID)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	var body struct {
		Data []struct {
			Spans     []JaegerSpan `json:"spans"`
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
	var spans []JaegerSpan
	for _, d := range body.Data {
		for _, s := range d.Spans {
			s.Service = d.Processes[s.ProcessID].ServiceName
			spans = append(spans, s)
		}
	}
	return spans, raw, nil
}
