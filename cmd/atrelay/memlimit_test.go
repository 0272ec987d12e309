package main

import (
	"bytes"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestSetMemoryLimit checks where the default memory limit comes from: an
// explicit GOMEMLIMIT is never overridden, AUTOMEMLIMIT=off leaves the
// limit alone, a container's limit gives 90% of it, and without one (or
// when it cannot be read) the buffer's estimate applies; restore puts the
// previous limit back. Not parallel: the memory limit and the environment
// belong to the process.
// Mutation caught: the cgroup provider's result returned without
// containerShare: the container case expects 90%.
// Mutation caught: the fallback to buffer removed (provider returning
// cgroup's error): the no-limit cases leave the limit unset.
func TestSetMemoryLimit(t *testing.T) {
	const buffer = 240 << 20
	const sentinel = 1 << 40 // the limit before, which only restore, GOMEMLIMIT and AUTOMEMLIMIT=off keep
	noLimit := func() (uint64, error) { return 0, memlimit.ErrNoLimit }
	unreadable := func() (uint64, error) { return 0, errors.New("cgroup mountpoint not found") }
	for _, tc := range []struct {
		name     string
		env      map[string]string
		cgroup   memlimit.Provider
		want     int64
		wantLog  string // a substring of the log
		notInLog string
	}{
		{"no container limit: the buffer", nil, noLimit, buffer, "source=max_buffered_events", "WARN"},
		{"unreadable container limit: the buffer, and a warning", nil, unreadable, buffer, "cannot read the container's memory limit", ""},
		{"container limit: 90% of it", nil, memlimit.Limit(1000 << 20), 900 << 20, "source=container", "WARN"},
		{"GOMEMLIMIT wins over a container", map[string]string{"GOMEMLIMIT": "1TiB"}, memlimit.Limit(1000 << 20), sentinel, "source=GOMEMLIMIT", ""},
		{"GOMEMLIMIT wins over the buffer", map[string]string{"GOMEMLIMIT": "1TiB"}, noLimit, sentinel, "source=GOMEMLIMIT", ""},
		{"AUTOMEMLIMIT=off", map[string]string{"AUTOMEMLIMIT": "off"}, noLimit, sentinel, `source="AUTOMEMLIMIT=off"`, ""},
		// An empty GOMEMLIMIT (a Kubernetes env entry with value: "") is
		// unset for the runtime. Mutation caught: without the Unsetenv the
		// limit stays at the sentinel (none: peak RSS 150–172 MiB on
		// bench-e2e's replay instead of 129).
		{"empty GOMEMLIMIT is unset", map[string]string{"GOMEMLIMIT": ""}, noLimit, buffer, "source=max_buffered_events", "WARN"},
		{"empty GOMEMLIMIT in a container", map[string]string{"GOMEMLIMIT": ""}, memlimit.Limit(1000 << 20), 900 << 20, "source=container", "WARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			before := debug.SetMemoryLimit(sentinel)
			defer debug.SetMemoryLimit(before)
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			restore := setMemoryLimit(log, tc.cgroup, buffer)
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("limit: got %d MiB, want %d MiB", got>>20, tc.want>>20)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log %q: want %q in it", logs.String(), tc.wantLog)
			}
			if tc.notInLog != "" && strings.Contains(logs.String(), tc.notInLog) {
				t.Errorf("log %q: want no %q in it", logs.String(), tc.notInLog)
			}
			restore()
			if got := debug.SetMemoryLimit(-1); got != sentinel {
				t.Errorf("after restore: got %d, want %d", got, int64(sentinel))
			}
		})
	}
}
