package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. The kernel
// exports these in USER_HZ, which is 100 on every Linux architecture's user
// ABI whatever the kernel's own HZ (proc(5): sysconf(_SC_CLK_TCK)); reading
// it through sysconf would need cgo, which the static build does without.
const userHZ = 100

// readCPU returns the CPU time (user + system) that process pid has used so
// far, from /proc/<pid>/stat.
func readCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	d, err := parseStatCPU(data)
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	return d, nil
}

// parseStatCPU returns utime + stime of a /proc/<pid>/stat line. The second
// field, the command name in parentheses, may hold spaces and parentheses
// itself, so the fields are counted from the last ')' on.
func parseStatCPU(stat []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc stat %q: no ')' closing the command name", truncate(stat))
	}
	// After ')': state(3) ppid(4) … utime(14) stime(15), so utime and stime
	// are the 12th and 13th fields of the rest.
	f := bytes.Fields(stat[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat %q: %d fields after the command name, want at least 13", truncate(stat), len(f))
	}
	var ticks int64
	for _, x := range []struct {
		name string
		i    int
	}{{"utime", 11}, {"stime", 12}} {
		n, err := strconv.ParseInt(string(f[x.i]), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc stat field %s %q: not a count of ticks", x.name, f[x.i])
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// readPeakRSS returns process pid's peak resident set size in bytes
// (VmHWM in /proc/<pid>/status).
func readPeakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak rss of pid %d: %w", pid, err)
	}
	n, err := parseStatusKB(data, "VmHWM")
	if err != nil {
		return 0, fmt.Errorf("peak rss of pid %d: %w", pid, err)
	}
	return n * 1024, nil
}

// parseStatusKB returns the value in kB of key in a /proc/<pid>/status
// ("VmHWM:\t  123456 kB").
func parseStatusKB(status []byte, key string) (int64, error) {
	for line := range bytes.Lines(status) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(k) != key {
			continue
		}
		f := bytes.Fields(v)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("/proc status %s: %q is not \"<n> kB\"", key, bytes.TrimSpace(v))
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc status %s: %q is not a size", key, f[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("/proc status: no %s line", key)
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
