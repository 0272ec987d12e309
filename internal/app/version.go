package app

import (
	"runtime"
	"runtime/debug"
)

// Commit and Date identify a release build. The build sets them with
//
//	go build -ldflags "-X github.com/atrelay/atrelay/internal/app.Commit=$(git rev-parse HEAD) \
//	  -X github.com/atrelay/atrelay/internal/app.Date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" ./cmd/atrelay
//
// Left empty, they come from what the Go toolchain stamps into a binary
// built in a Git work tree: vcs.revision, and vcs.time (the commit's time,
// so a rebuild of the same commit says the same).
var (
	Commit string
	Date   string
)

// BuildInfo describes the running binary, as `atrelay version` prints it.
// An empty field is unknown.
type BuildInfo struct {
	Version string // Version
	Commit  string
	// Modified is true for a build from a work tree with uncommitted
	// changes (vcs.modified); it is never set with -ldflags.
	Modified bool
	Date     string
	Go       string // the Go release that built it
	FranzGo  string // the version of github.com/twmb/franz-go linked in
}

// ReadBuildInfo returns the running binary's BuildInfo.
func ReadBuildInfo() BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildInfo(bi, Commit, Date)
}

// buildInfo reads bi (nil when the binary has none); commit and date, when
// set, win over bi's.
func buildInfo(bi *debug.BuildInfo, commit, date string) BuildInfo {
	b := BuildInfo{Version: Version, Go: runtime.Version()}
	if bi == nil {
		b.Commit, b.Date = commit, date
		return b
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Date = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if commit != "" {
		b.Commit, b.Modified = commit, false
	}
	if date != "" {
		b.Date = date
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/twmb/franz-go" {
			if d.Replace != nil {
				d = d.Replace
			}
			b.FranzGo = d.Version
		}
	}
	return b
}
