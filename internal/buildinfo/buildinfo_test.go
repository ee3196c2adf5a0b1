package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFromBuild(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/tokenrelay/tokenrelay", Version: "v0.0.0-20261207031311-ce28d87aaaaa+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "ce28d87aaaaabbbbccccddddeeeeffff00001111"},
			{Key: "vcs.time", Value: "2026-12-07T03:13:11Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	clean := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: Devel},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		x    linked
		want Info
		line string
	}{{
		name: "stamped by go build in a dirty checkout",
		bi:   stamped,
		want: Info{Version: "v0.0.0-20261207031311-ce28d87aaaaa+dirty", Commit: "ce28d87aaaaabbbbccccddddeeeeffff00001111-dirty",
			CommitTime: "2026-12-07T03:13:11Z", GoVersion: "go1.26.0"},
		line: "tokenrelay v0.0.0-20261207031311-ce28d87aaaaa+dirty, commit ce28d87aaaaabbbbccccddddeeeeffff00001111-dirty, committed 2026-12-07T03:13:11Z, go1.26.0",
	}, {
		name: "-X version and buildTime win", bi: stamped, x: linked{version: "v1.4.0", buildTime: "2026-12-07T04:00:00Z"},
		want: Info{Version: "v1.4.0", Commit: "ce28d87aaaaabbbbccccddddeeeeffff00001111-dirty", BuildTime: "2026-12-07T04:00:00Z",
			CommitTime: "2026-12-07T03:13:11Z", GoVersion: "go1.26.0"},
		line: "tokenrelay v1.4.0, commit ce28d87aaaaabbbbccccddddeeeeffff00001111-dirty, built 2026-12-07T04:00:00Z, go1.26.0",
	}, {
		name: "-X commit wins over vcs.revision (scripts/image.sh: no .git directory in a worktree)", bi: stamped,
		x:    linked{version: "dev", commit: "0123456789abcdef0123456789abcdef01234567"},
		want: Info{Version: "dev", Commit: "0123456789abcdef0123456789abcdef01234567", CommitTime: "2026-12-07T03:13:11Z", GoVersion: "go1.26.0"},
		line: "tokenrelay dev, commit 0123456789abcdef0123456789abcdef01234567, committed 2026-12-07T03:13:11Z, go1.26.0",
	}, {
		name: "-X commit without build info", bi: nil, x: linked{commit: "abc"},
		want: Info{Version: Devel, Commit: "abc", GoVersion: runtime.Version()},
		line: "tokenrelay (devel), commit abc, " + runtime.Version(),
	}, {
		name: "a clean commit, no version", bi: clean,
		want: Info{Version: Devel, Commit: "abc", GoVersion: "go1.26.0"},
		line: "tokenrelay (devel), commit abc, go1.26.0",
	}, {
		name: "no Git (the Docker build): only what -X gives", bi: &debug.BuildInfo{GoVersion: "go1.26.0"}, x: linked{version: "dev"},
		want: Info{Version: "dev", GoVersion: "go1.26.0"},
		line: "tokenrelay dev, go1.26.0",
	}, {
		name: "no build info at all", bi: nil,
		want: Info{Version: Devel, GoVersion: runtime.Version()},
		line: "tokenrelay (devel), " + runtime.Version(),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := fromBuild(tc.bi, tc.x)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.line, got.String())
		})
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	got := Read()
	require.NotEmpty(t, got.Version)
	require.Equal(t, runtime.Version(), got.GoVersion)
	require.Equal(t, got, Read(), "read once")
}
