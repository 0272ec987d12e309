package app

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestBuildInfo: the commit and date come from the toolchain's stamp unless
// -ldflags set them; franz-go's version comes from the module list.
//
// Mutations caught: letting vcs.revision win over the -ldflags Commit fails
// "ldflags win"; reading the franz-go path of a replaced module instead of
// its replacement fails "replaced franz-go"; keeping vcs.modified with an
// -ldflags commit fails "ldflags win".
func TestBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123abcd"},
			{Key: "vcs.time", Value: "2026-11-25T20:43:05Z"},
			{Key: "vcs.modified", Value: "true"},
		},
		Deps: []*debug.Module{
			{Path: "github.com/twmb/franz-go/pkg/kmsg", Version: "v1.15.1"},
			{Path: "github.com/twmb/franz-go", Version: "v1.22.3"},
		},
	}
	replaced := &debug.BuildInfo{Deps: []*debug.Module{
		{Path: "github.com/twmb/franz-go", Version: "v1.22.3", Replace: &debug.Module{Path: "../franz-go", Version: "v1.23.0-fork"}},
	}}
	tests := []struct {
		name         string
		bi           *debug.BuildInfo
		commit, date string
		want         BuildInfo
	}{
		{"stamped by go build", stamped, "", "",
			BuildInfo{Version: Version, Commit: "0123abcd", Modified: true, Date: "2026-11-25T20:43:05Z", Go: runtime.Version(), FranzGo: "v1.22.3"}},
		{"ldflags win", stamped, "fedcba98", "2026-12-01T00:00:00Z",
			BuildInfo{Version: Version, Commit: "fedcba98", Date: "2026-12-01T00:00:00Z", Go: runtime.Version(), FranzGo: "v1.22.3"}},
		{"replaced franz-go", replaced, "", "",
			BuildInfo{Version: Version, Go: runtime.Version(), FranzGo: "v1.23.0-fork"}},
		{"no build info", nil, "fedcba98", "",
			BuildInfo{Version: Version, Commit: "fedcba98", Go: runtime.Version()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildInfo(tt.bi, tt.commit, tt.date); got != tt.want {
				t.Fatalf("buildInfo = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
