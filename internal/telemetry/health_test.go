package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/internal/telemetry"
)

// readyz returns /readyz's status and body.
func readyz(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return w.Code, w.Body.String()
}

// TestReadyWantsRecentContact: /readyz is 503 while the member owns no
// partition, and also while it owns some but has had no successful fetch
// or heartbeat for longer than ReadyTimeout; it is 200 again at the next
// contact. Time is synctest's.
// Mutations caught: Ready ignoring LastContact (tried: 200 while assigned
// and never in contact); the age compared with 0 instead of ReadyTimeout
// (tried: 503 right after a contact).
func TestReadyWantsRecentContact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var last time.Time
		h := &telemetry.Health{ReadyTimeout: 30 * time.Second, LastContact: func() time.Time { return last }}
		handler := h.Handler()
		if code, body := readyz(t, handler); code != 503 || !strings.Contains(body, "owns no partition") {
			t.Fatalf("before any assignment: %d %q, want 503 naming the partitions", code, body)
		}
		h.SetReady(true)
		if code, body := readyz(t, handler); code != 503 || !strings.Contains(body, "no successful fetch or heartbeat yet") {
			t.Fatalf("assigned, never in contact: %d %q, want 503", code, body)
		}
		last = time.Now()
		if code, _ := readyz(t, handler); code != 200 {
			t.Fatalf("assigned, in contact now: %d, want 200", code)
		}
		time.Sleep(29 * time.Second) // synctest: time moves, nothing waits
		if code, _ := readyz(t, handler); code != 200 {
			t.Fatalf("29 s of silence, ready_timeout 30 s: %d, want 200", code)
		}
		time.Sleep(2 * time.Second)
		code, body := readyz(t, handler)
		if code != 503 || !strings.Contains(body, "no successful fetch or heartbeat for 31s (ready_timeout 30s)") {
			t.Fatalf("31 s of silence: %d %q, want 503 saying for how long", code, body)
		}
		last = time.Now()
		if code, _ := readyz(t, handler); code != 200 {
			t.Fatalf("contact again: %d, want 200", code)
		}
		h.SetReady(false)
		if code, _ := readyz(t, handler); code != 503 {
			t.Fatalf("no partition, recent contact: %d, want 503", code)
		}
	})
}

// TestListenFailsAtOnce: Listen reports an address in use at once, naming
// it, before anything is served; a bound Server serves until its context
// ends, then Serve returns nil; "off" binds nothing. (Serve's use of it is
// TestServeFailsOnBusyListener in internal/app.)
func TestListenFailsAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = telemetry.Listen(taken.Addr().String(), http.NotFoundHandler())
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("Listen on a taken port = %v, want EADDRINUSE naming %s", err, taken.Addr())
	}

	h := &telemetry.Health{}
	srv, err := telemetry.Listen("127.0.0.1:0", h.Handler())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("/healthz = %d %q", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after its context ended = %v, want nil", err)
	}

	off, err := telemetry.Listen(telemetry.Off, h.Handler())
	if err != nil || off.Addr() != telemetry.Off {
		t.Fatalf("Listen(off) = %v, %v", off, err)
	}
}

// TestReadyTimeoutConfig: ready_timeout defaults to 30 s and must be at
// least 5 s, the error naming the key.
func TestReadyTimeoutConfig(t *testing.T) {
	var c telemetry.Config
	c.Default()
	if c.ReadyTimeout != 30*time.Second {
		t.Fatalf("default ready_timeout = %s", c.ReadyTimeout)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.ReadyTimeout = 2 * time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ready_timeout") {
		t.Fatalf("ready_timeout 2s: %v, want an error naming ready_timeout", err)
	}
}

// TestReadyDetail: /readyz lists the Detail lines below its answer, ready
// (200: a paused or parked site is no reason to restart the member) or
// not (503), and says only "ready" when Detail returns nothing.
// Mutation caught: the handler writing the Detail lines only when not
// ready (tried: the ready case lacked the paused site).
func TestReadyDetail(t *testing.T) {
	var lines []string
	h := &telemetry.Health{Detail: func() []string { return lines }}
	handler := h.Handler()
	h.SetReady(true)
	if code, body := readyz(t, handler); code != 200 || body != "ready\n" {
		t.Fatalf("ready, nothing to say: %d %q, want 200 \"ready\\n\"", code, body)
	}
	lines = []string{"isolated site: integration wrong (site 404, group g): paused by HTTP 404 since 2026-11-26T02:30:00Z (3m0s)",
		"isolated site: integration down (site 503, group g): parking its records (no_answer) since 2026-11-26T02:31:00Z (2m0s)"}
	want := strings.Join(lines, "\n") + "\n"
	tests := []struct {
		name  string
		ready bool
		code  int
		first string
	}{
		{"ready", true, 200, "ready\n"},
		{"not ready", false, 503, "not ready: the member owns no partition"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.SetReady(tc.ready)
			code, body := readyz(t, handler)
			if code != tc.code || !strings.HasPrefix(body, tc.first) || !strings.HasSuffix(body, "\n"+want) {
				t.Fatalf("/readyz = %d %q, want %d starting %q and ending with the detail:\n%s", code, body, tc.code, tc.first, want)
			}
		})
	}
}
