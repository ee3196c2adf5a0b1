package deployments_test

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// imageTestVersion is the version TestImage stamps into the image it builds.
const imageTestVersion = "v0.0.0-imagetest"

// kmsSDKs are the cloud KMS SDKs the default image must not link (docs/keys.md:
// they come in only with GO_TAGS).
var kmsSDKs = []string{"github.com/aws/aws-sdk-go-v2", "cloud.google.com/go/kms",
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys", "github.com/hashicorp/vault/api"}

// TestImage builds the container image from the repository's Dockerfile
// with buildah (scripts/image.sh, no Docker daemon, nothing pulled), checks
// what it holds, then runs the vendor sandbox, the scheduler and the worker
// from it against the real Redis and NATS: both programs must answer
// /readyz with 200, and a credential must renew (the token.renewed event of
// its second generation arrives).
//
// Building compiles every program again (a minute or more of both cores),
// so it runs only with IMAGE_TEST=1: make test runs it in a step of its
// own (make image-test), after the other tests. With TOKENRELAY_IMAGE set
// (make image) it checks that image, from buildah's own storage, instead
// of building one. Without buildah it fails under CI, which installs it
// (scripts/ensure-services.sh), and is skipped elsewhere.
// notInImage are the programs under cmd/ the image leaves out: the dev
// mode (make run), which embeds Redis, NATS and the vendor sandbox.
var notInImage = map[string]bool{"tokenrelay-dev": true}

func TestImage(t *testing.T) {
	if _, err := exec.LookPath("buildah"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("buildah is not installed: scripts/ensure-services.sh installs it (make services)")
		}
		t.Skip("buildah is not installed (apt-get install buildah, or make services)")
	}
	if os.Getenv("IMAGE_TEST") != "1" {
		t.Skip("set IMAGE_TEST=1 (make test does, in a step of its own: make image-test)")
	}
	b := &buildah{t: t, env: append(os.Environ(), "BUILDAH_ISOLATION=chroot")}
	image, version, goTags := os.Getenv("TOKENRELAY_IMAGE"), os.Getenv("VERSION"), os.Getenv("GO_TAGS")
	if image == "" {
		image, version, goTags = "localhost/tokenrelay:imagetest", imageTestVersion, ""
		b.privateStore()
		script := exec.Command("bash", "scripts/image.sh")
		script.Dir = ".."
		script.Env = append(b.env, "IMAGE="+image, "VERSION="+version, "GO_TAGS=", "BUILD_DIR="+t.TempDir())
		out, err := script.CombinedOutput()
		require.NoError(t, err, "scripts/image.sh\n%s", out)
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
	if version == "" {
		version = "dev"
	}
	t.Logf("image %s: %s", image, b.run("images", "--format", "{{.Size}}", image))

	requireImageContents(t, b, image, version, goTags)
	requireImageRuns(t, b, image)
}

// requireImageContents checks the image's configuration and files: a
// non-root user, the CA certificates, and every program static, stripped,
// built with -trimpath, linking no cloud KMS SDK unless GO_TAGS asked for
// one, reporting the version and commit it was built at.
func requireImageContents(t *testing.T, b *buildah, image, version, goTags string) {
	require.Equal(t, "65532:65532", b.run("inspect", "--format", "{{.OCIv1.Config.User}}", image), "the image runs as nonroot")
	ctr := b.from(image)
	root := b.run("mount", ctr)
	t.Cleanup(func() { b.run("umount", ctr) })

	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	require.NoError(t, err)
	require.Contains(t, string(passwd), "\nnonroot:x:65532:65532:", "the user the image runs as exists")
	home, err := os.Stat(filepath.Join(root, "home/nonroot"))
	require.NoError(t, err, "the user has a home (the worker's default spool is under it)")
	require.Equal(t, uint32(65532), home.Sys().(*syscall.Stat_t).Uid, "nonroot owns its home")
	certs, err := os.Stat(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	require.NoError(t, err, "the CA certificates, for TLS to vendors, Redis and NATS")
	require.Greater(t, certs.Size(), int64(10_000))

	dirs, err := os.ReadDir("../cmd")
	require.NoError(t, err)
	for _, d := range dirs {
		bin := filepath.Join(root, "usr/local/bin", d.Name())
		if notInImage[d.Name()] {
			_, err := os.Stat(bin)
			require.ErrorIs(t, err, os.ErrNotExist, "the image holds the dev-only %s", d.Name())
			continue
		}
		f, err := elf.Open(bin)
		require.NoError(t, err, "the image holds %s", d.Name())
		for _, p := range f.Progs {
			require.NotEqual(t, elf.PT_INTERP, p.Type, "%s must be static (no dynamic loader): the image has no C library", d.Name())
		}
		_, err = f.DynamicSymbols()
		require.Error(t, err, "%s must have no dynamic symbols", d.Name())
		require.Nil(t, f.Section(".debug_info"), "%s is stripped (-s -w)", d.Name())
		f.Close()
		mods, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
		require.NoError(t, err, "%s", mods)
		require.Contains(t, string(mods), "\tbuild\t-trimpath=true\n", "%s holds no build machine paths", d.Name())
		require.Contains(t, string(mods), "\tbuild\tCGO_ENABLED=0\n", d.Name())
		if goTags == "" {
			for _, sdk := range kmsSDKs {
				require.NotContains(t, string(mods), "\tdep\t"+sdk+"\t", "%s: the default image links no cloud KMS SDK", d.Name())
			}
		}
	}

	// The version and the commit reach the programs through -ldflags -X.
	line := b.run("run", "--isolation", "chroot", ctr, "--", "tokenrelay", "version")
	require.True(t, strings.HasPrefix(line, "tokenrelay "+version+", "), "tokenrelay version in the image says %q, not the image's version %q", line, version)
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && os.Getenv("TOKENRELAY_IMAGE") == "" {
		require.Contains(t, line, ", commit "+strings.TrimSpace(string(head)), "the image's programs name the commit they were built at")
	}
}

// requireImageRuns starts the vendor sandbox, the scheduler and the worker
// from the image, on the host's network (buildah's chroot isolation),
// with a configuration of their own: a Redis database, a stream and a
// subject prefix of their own, and a credential whose tokens live 4 s.
func requireImageRuns(t *testing.T, b *buildah, image string) {
	db, _ := testenv.RedisDB(t)
	nc, _, stream := testenv.NATS(t)
	prefix := testenv.Unique("img") + "."
	// The generation of every token.renewed event, as it arrives.
	renewed := make(chan int64, 1024)
	sub, err := nc.Subscribe(prefix+events.TypeTokenRenewed+".>", func(m *nats.Msg) {
		var ev events.Envelope
		var data events.TokenRenewed
		if json.Unmarshal(m.Data, &ev) == nil && json.Unmarshal(ev.Data, &data) == nil && data.Credential == "clinic-1" {
			renewed <- data.Generation
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	sandboxPort, httpPort, metricsPort := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	clientSecret := testenv.Unique("secret-")
	key := make([]byte, 32)
	_, err = rand.Read(key)
	require.NoError(t, err)

	// The configuration, readable by the image's user.
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	cfg := fmt.Sprintf(`redis:
  url: redis://%s/%d
nats:
  url: %s
  stream: %s
  subject_prefix: %q
http:
  addr: 127.0.0.1:%d
scheduler:
  metrics_addr: 127.0.0.1:%d
vendors:
  portal:
    kind: oauth2
    base_url: http://127.0.0.1:%d/oauth2/
    token_url: http://127.0.0.1:%d/oauth2/token
    max_token_lifetime: 4s
    refresh_at: 0.5
    refresh_jitter: 0
credentials:
  - {id: clinic-1, vendor: portal, client_id: clinic-1, client_secret: "${CLINIC1_CLIENT_SECRET}"}
`, testenv.RedisAddr(), db, testenv.NATSURL(), stream, prefix, httpPort, metricsPort, sandboxPort, sandboxPort)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenrelay.yaml"), []byte(cfg), 0o644))

	b.start("sandbox", image, nil, "sandbox", fmt.Sprintf("-addr=127.0.0.1:%d", sandboxPort), "-client=clinic-1:"+clientSecret)
	env := []string{"TOKENRELAY_SECRET_KEY=" + base64.StdEncoding.EncodeToString(key), "CLINIC1_CLIENT_SECRET=" + clientSecret}
	mount := []string{"--volume", dir + ":/etc/tokenrelay:ro"}
	b.start("scheduler", image, append(mount, envFlags(env)...), "scheduler", "-config", "/etc/tokenrelay/tokenrelay.yaml")
	b.start("worker", image, append(mount, envFlags(env)...), "worker", "-config", "/etc/tokenrelay/tokenrelay.yaml")

	for name, port := range map[string]int{"worker": httpPort, "scheduler": metricsPort} {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
		ready := func() bool {
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		if !assert.Eventually(t, ready, 90*time.Second, 200*time.Millisecond, "the %s in the image answers %s with 200", name, url) {
			t.Fatalf("what the programs wrote:\n%s", b.logs())
		}
	}

	// The first token is generation 1; the scheduler refreshes it after
	// 2 s, and the worker's renewal is generation 2.
	deadline := time.After(60 * time.Second)
	for {
		select {
		case generation := <-renewed:
			if generation >= 2 {
				return
			}
		case <-deadline:
			t.Fatalf("no token.renewed of a second generation in 60 s\n%s", b.logs())
		}
	}
}

// buildah runs buildah for a test, on the storage its environment names.
type buildah struct {
	t      *testing.T
	env    []string
	output []*namedLog
}

type namedLog struct {
	name string
	buf  *testenv.Buffer
}

// privateStore points buildah at a storage of the test's own (vfs, in a
// temporary directory), emptied when the test ends.
func (b *buildah) privateStore() {
	dir := b.t.TempDir()
	conf := filepath.Join(dir, "storage.conf")
	require.NoError(b.t, os.WriteFile(conf, fmt.Appendf(nil, "[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "run")), 0o644))
	b.env = append(b.env, "CONTAINERS_STORAGE_CONF="+conf)
	b.t.Cleanup(func() {
		b.run("rm", "--all")
		b.run("rmi", "--all", "--force")
	})
}

// run runs one buildah command to its end and returns its standard
// output, trimmed (warnings buildah prints go to standard error).
func (b *buildah) run(args ...string) string {
	b.t.Helper()
	cmd := exec.Command("buildah", args...)
	cmd.Env = b.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(b.t, err, "buildah %s\n%s%s", strings.Join(args, " "), out, stderr.String())
	return strings.TrimSpace(string(out))
}

// from makes a working container of the image, removed when the test ends.
func (b *buildah) from(image string) string {
	b.t.Helper()
	ctr := b.run("from", "--pull=never", "--quiet", image)
	b.t.Cleanup(func() { b.run("rm", ctr) })
	return ctr
}

// start runs a program of the image in a working container of its own
// until the test ends, collecting its output for b.logs.
func (b *buildah) start(name, image string, flags []string, program ...string) {
	b.t.Helper()
	ctr := b.from(image)
	ctx, cancel := context.WithCancel(context.Background())
	args := append(append([]string{"run", "--isolation", "chroot"}, flags...), append([]string{ctr, "--"}, program...)...)
	cmd := exec.CommandContext(ctx, "buildah", args...)
	cmd.Env = b.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	b.output = append(b.output, &namedLog{name: name, buf: out})
	require.NoError(b.t, cmd.Start(), "buildah run %s", name)
	// Stopped before its container is removed (cleanups run last first).
	b.t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
}

// logs is what the programs started so far wrote.
func (b *buildah) logs() string {
	var s strings.Builder
	for _, l := range b.output {
		fmt.Fprintf(&s, "--- %s:\n%s\n", l.name, l.buf.String())
	}
	return s.String()
}

func envFlags(env []string) []string {
	var flags []string
	for _, e := range env {
		flags = append(flags, "--env", e)
	}
	return flags
}

// freeTCPPort returns a port on 127.0.0.1 that nothing listened on a
// moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
