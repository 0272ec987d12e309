package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestWatchSignals: signals within 1s of the first are the same request to
// stop (process-group delivery: `timeout`, `docker stop`); only a later
// one exits 130. The bubble's clock is fake: time.Sleep moves it, it does
// not wait.
//
// Mutations caught: exiting on any second signal (as main did) fails
// "100ms apart" and "three within 1s"; measuring from the previous signal
// instead of the first fails "every 600ms"; >= instead of > fails
// "exactly 1s".
func TestWatchSignals(t *testing.T) {
	tests := []struct {
		name     string
		at       []time.Duration // when each signal arrives, from the first
		wantExit bool
	}{
		{"one", []time.Duration{0}, false},
		{"100ms apart", []time.Duration{0, 100 * time.Millisecond}, false},
		{"at once", []time.Duration{0, 0}, false},
		{"three within 1s", []time.Duration{0, 300 * time.Millisecond, 900 * time.Millisecond}, false},
		{"exactly 1s", []time.Duration{0, time.Second}, false},
		{"1.5s later", []time.Duration{0, 1500 * time.Millisecond}, true},
		{"a duplicate, then 1.5s later", []time.Duration{0, 100 * time.Millisecond, 1500 * time.Millisecond}, true},
		{"every 600ms", []time.Duration{0, 600 * time.Millisecond, 1200 * time.Millisecond}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sigs := make(chan os.Signal, len(tt.at))
				stops, code := 0, -1
				done := make(chan struct{})
				go func() {
					defer close(done)
					watchSignals(sigs, func() { stops++ }, func(c int) { code = c })
				}()
				start := time.Now()
				for _, at := range tt.at {
					time.Sleep(at - time.Since(start))
					sigs <- syscall.SIGTERM
					synctest.Wait()
				}
				close(sigs)
				<-done
				if stops != 1 {
					t.Errorf("stop called %d times, want 1", stops)
				}
				switch {
				case tt.wantExit && code != 130:
					t.Errorf("exit code %d, want 130", code)
				case !tt.wantExit && code != -1:
					t.Errorf("exit(%d) called; want a graceful shutdown", code)
				}
			})
		})
	}
}

// TestMainSignals runs the real binary (this test binary, running main)
// as `atrelay collector` and stops it as a process-group delivery does:
// two SIGTERMs 100ms apart, while a request keeps the shutdown busy. It
// must exit 0 when the request completes, not 130.
//
// Mutations caught: main without watchSignals (the default action kills
// it) fails; main exiting 130 on any second signal (as before) fails.
func TestMainSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ATRELAY_TEST_MAIN=collector --listen 127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("no output; stderr:\n%s", stderr.String())
	}
	_, addr, _ := strings.Cut(lines.Text(), "http://")
	addr, _, _ = strings.Cut(addr, " ")
	go func() {
		for lines.Scan() { // the collector logs each request
		}
	}()

	// A request whose body is not sent yet: once the server answers
	// "100 Continue", its handler is reading the body, so the shutdown
	// waits for it.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := "[]"
	fmt.Fprintf(conn, "POST /event?s=1&idclient=x HTTP/1.1\r\nHost: %s\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, len(body))
	resp := bufio.NewReader(conn)
	if status, err := resp.ReadString('\n'); err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		t.Fatalf("status %q, %v", status, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the gap under test, not a wait for anything
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("the second signal found no process: %v\nstderr:\n%s", err, stderr.String())
	}
	// The request completes, so the shutdown does; a main that took the
	// second signal as "exit now" is gone by now, or races this.
	fmt.Fprint(conn, body)
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); err != nil || code != 0 {
		t.Fatalf("exit %d (%v), want 0\nstderr:\n%s", code, err, stderr.String())
	}
}

// TestMain runs main instead of the tests when ATRELAY_TEST_MAIN holds a
// command line: TestMainSignals runs the test binary as atrelay.
func TestMain(m *testing.M) {
	if args := os.Getenv("ATRELAY_TEST_MAIN"); args != "" {
		os.Args = append([]string{"atrelay"}, strings.Fields(args)...)
		main()
	}
	os.Exit(m.Run())
}
