package deployments_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// goBuildStep is the Dockerfile's build command: "CGO_ENABLED=0 GOOS=linux
// go build ... -o /out/ ./cmd/a ./cmd/b", across continued lines.
var goBuildStep = regexp.MustCompile(`((?:[A-Z_]+=\S+\s+)*)go build ([^\n]*?)-o /out/\s+((?:\./cmd/\S+\s*)+)`)

// dockerArg is an ARG line with its default: "ARG VERSION=dev".
var dockerArg = regexp.MustCompile(`(?m)^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$`)

// TestDockerfileBuildStep runs the Dockerfile's go build step as written
// (its environment, flags and packages, the build arguments at their
// defaults; only the output directory differs) and checks that it makes
// every program, each a static executable that runs on distroless/static,
// which has no C library, and that the version reaches them. No Docker
// daemon is needed, so CI checks what the image build would do here.
//
// It compiles everything again (a minute or two of both cores), so it runs
// only with DOCKERFILE_BUILD=1: make test runs it on its own after the
// other tests, not beside the timing-sensitive pipeline tests.
func TestDockerfileBuildStep(t *testing.T) {
	if os.Getenv("DOCKERFILE_BUILD") != "1" {
		t.Skip("set DOCKERFILE_BUILD=1 (make test does, in a step of its own)")
	}
	t.Parallel()
	raw, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	dockerfile := strings.ReplaceAll(string(raw), "\\\n", " ")
	m := goBuildStep.FindStringSubmatch(dockerfile)
	require.NotNil(t, m, "the Dockerfile has a `go build ... -o /out/ ./cmd/...` step")
	env, flags, pkgs := strings.Fields(m[1]), m[2], strings.Fields(m[3])
	// The build arguments, at their defaults, as the shell of the RUN step
	// would substitute them (an unset one is empty).
	buildArgs := map[string]string{}
	for _, a := range dockerArg.FindAllStringSubmatch(dockerfile, -1) {
		buildArgs[a[1]] = a[2]
	}
	flags = os.Expand(flags, func(name string) string { return buildArgs[name] })

	out := t.TempDir()
	args := append([]string{"build"}, splitFlags(t, flags)...)
	args = append(append(args, "-o", out+"/"), pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s\n%s", strings.Join(args, " "), b)

	dirs, err := os.ReadDir("../cmd")
	require.NoError(t, err)
	for _, d := range dirs {
		if notInImage[d.Name()] {
			continue
		}
		f, err := elf.Open(filepath.Join(out, d.Name()))
		require.NoError(t, err, "the build makes %s", d.Name())
		for _, p := range f.Progs {
			require.NotEqual(t, elf.PT_INTERP, p.Type, "%s must be static (no dynamic loader): distroless/static has no libc", d.Name())
		}
		_, err = f.DynamicSymbols()
		require.Error(t, err, "%s must have no dynamic symbols", d.Name())
		require.Nil(t, f.Section(".debug_info"), "%s is stripped (-s -w)", d.Name())
		f.Close()
	}
	// By default (GO_TAGS empty) the image links no cloud KMS SDK.
	mods, err := exec.Command("go", "version", "-m", filepath.Join(out, "worker")).CombinedOutput()
	require.NoError(t, err, "%s", mods)
	if buildArgs["GO_TAGS"] == "" {
		for _, sdk := range []string{"github.com/aws/aws-sdk-go-v2", "cloud.google.com/go/kms", "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys", "github.com/hashicorp/vault/api"} {
			require.NotContains(t, string(mods), "\tdep\t"+sdk+"\t", "the default image links no cloud KMS SDK")
		}
	}
	// ARG VERSION reaches the binaries through -ldflags -X.
	b, err = exec.Command(filepath.Join(out, "tokenrelay"), "version").CombinedOutput()
	require.NoError(t, err, "%s", b)
	require.True(t, strings.HasPrefix(string(b), "tokenrelay "+buildArgs["VERSION"]+","), "tokenrelay version says %q, not the image's VERSION %q", b, buildArgs["VERSION"])
}

// splitFlags splits the build flags as a shell would, for the quoting the
// Dockerfile uses (-ldflags="-s -w").
func splitFlags(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote == 0 && (c == ' ' || c == '\t'):
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	require.Zero(t, quote, "unbalanced quotes in %q", s)
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
