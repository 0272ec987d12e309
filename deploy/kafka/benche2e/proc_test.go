package main

import (
	"os"
	"testing"
	"time"
)

// TestParseStatCPU reads utime + stime from /proc/<pid>/stat lines. The
// command name may hold spaces and ')'. Mutation caught: counting the
// fields from the first ')' instead of the last fails "comm with parens";
// taking fields 13 and 14 of the rest (off by one) fails every good case.
func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{name: "plain", want: 1234*10*time.Millisecond + 56*10*time.Millisecond,
			stat: "4242 (atrelay) S 1 4242 4242 0 -1 4194560 9000 0 0 0 1234 56 0 0 20 0 9 0 777 1000000 5000 18446744073709551615\n"},
		{name: "comm with spaces", want: 3 * time.Second,
			stat: "7 (my relay x) R 1 7 7 0 -1 0 0 0 0 0 200 100 7 7 20 0 1 0 5 0 0 0\n"},
		{name: "comm with parens", want: 150 * time.Millisecond,
			stat: "8 (a) b (c)) S 1 8 8 0 -1 0 0 0 0 0 10 5 99 99 20 0 1 0 5 0 0 0\n"},
		{name: "no paren", stat: "8 a S 1 8", wantErr: true},
		{name: "too short", stat: "8 (a) S 1 8 8 0 -1 0 0 0 0 0 10", wantErr: true},
		{name: "not a number", stat: "8 (a) S 1 8 8 0 -1 0 0 0 0 0 ten 5 0 0 20", wantErr: true},
		{name: "negative", stat: "8 (a) S 1 8 8 0 -1 0 0 0 0 0 -10 5 0 0 20", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("cpu = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestParseStatusKB reads a kB line of /proc/<pid>/status. Mutation caught:
// matching keys by prefix (VmHWM vs VmHWMx) fails "prefix is not the key".
func TestParseStatusKB(t *testing.T) {
	const status = "Name:\tatrelay\nVmPeak:\t  900000 kB\nVmHWMx:\t 1 kB\nVmHWM:\t  381236 kB\nVmRSS:\t  200000 kB\nThreads:\t9\n"
	for _, tc := range []struct {
		name, status, key string
		want              int64
		wantErr           bool
	}{
		{name: "VmHWM", status: status, key: "VmHWM", want: 381236},
		{name: "prefix is not the key", status: "VmHWMx:\t 1 kB\nVmHWM:\t 2 kB\n", key: "VmHWM", want: 2},
		{name: "missing", status: "Name:\tx\n", key: "VmHWM", wantErr: true},
		{name: "no unit", status: "VmHWM:\t 12\n", key: "VmHWM", wantErr: true},
		{name: "not a number", status: "VmHWM:\t 1x2 kB\n", key: "VmHWM", wantErr: true},
		{name: "not kB", status: "Threads:\t9\n", key: "Threads", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatusKB([]byte(tc.status), tc.key)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("%s = %d kB, want %d", tc.key, got, tc.want)
			}
		})
	}
}

// TestReadOwnProcess reads this test process's own files: the real format
// parses, whatever the kernel. Mutation caught: a wrong path (/proc/%d/stats)
// fails it.
func TestReadOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc:", err)
	}
	pid := os.Getpid()
	if _, err := readCPU(pid); err != nil {
		t.Error(err)
	}
	rss, err := readPeakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 {
		t.Errorf("peak RSS = %d, want > 0", rss)
	}
}
