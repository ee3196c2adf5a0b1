// Package buildinfo says which build of tokenrelay is running: the module
// version, the commit, when it was built and with which Go. The programs
// print it for -version, the metrics registries serve it as
// tokenrelay_build_info, and the operator pages show it in their footer.
//
// Go stamps the commit into every binary built from a Git checkout
// (debug.ReadBuildInfo) unless -buildvcs=false or the checkout is a
// worktree; the version, the commit and the build time can be given at
// link time instead (scripts/image.sh does):
//
//	go build -ldflags "-X github.com/tokenrelay/tokenrelay/internal/buildinfo.version=v1.4.0 \
//	  -X github.com/tokenrelay/tokenrelay/internal/buildinfo.commit=$(git rev-parse HEAD) \
//	  -X github.com/tokenrelay/tokenrelay/internal/buildinfo.buildTime=2026-12-07T03:00:00Z" ./cmd/...
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Set by -ldflags "-X ...": they win over what the binary records.
var (
	version   string
	commit    string
	buildTime string
)

// Devel is the version of a build that has none: go run, go test, or a
// go build outside a tagged or stamped checkout.
const Devel = "(devel)"

// Info is one build's identity. A field that is not known is empty, except
// Version (Devel) and GoVersion (always known).
type Info struct {
	// Version is the -X version, else the main module's version.
	Version string
	// Commit is the -X commit, else vcs.revision with "-dirty" when the
	// work tree had uncommitted changes (vcs.modified).
	Commit string
	// BuildTime is the -X buildTime, as given (RFC 3339 by convention).
	BuildTime string
	// CommitTime is vcs.time, the commit's time (RFC 3339).
	CommitTime string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's build info. It is read once.
func Read() Info { return read() }

var read = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(bi, linked{version: version, commit: commit, buildTime: buildTime})
})

// linked is what -ldflags -X set; each field given wins over what the
// binary records.
type linked struct {
	version, commit, buildTime string
}

// fromBuild is Read's work, with what the binary records and the link-time
// overrides passed in. bi may be nil (a binary built without module
// support).
func fromBuild(bi *debug.BuildInfo, x linked) Info {
	info := Info{Version: x.version, Commit: x.commit, BuildTime: x.buildTime, GoVersion: runtime.Version()}
	if bi == nil {
		if info.Version == "" {
			info.Version = Devel
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = Devel
	}
	revision, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			info.CommitTime = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && revision != "" {
		revision += "-dirty"
	}
	if info.Commit == "" {
		info.Commit = revision
	}
	return info
}

// String is the one line -version prints and the operator pages show:
// "tokenrelay v1.4.0, commit 0123abc…-dirty, built 2026-12-07T03:00:00Z, go1.26.0",
// leaving out what is not known.
func (i Info) String() string {
	parts := []string{"tokenrelay " + i.Version}
	if i.Commit != "" {
		parts = append(parts, "commit "+i.Commit)
	}
	switch {
	case i.BuildTime != "":
		parts = append(parts, "built "+i.BuildTime)
	case i.CommitTime != "":
		parts = append(parts, "committed "+i.CommitTime)
	}
	return strings.Join(append(parts, i.GoVersion), ", ")
}
