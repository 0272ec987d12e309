//go:build linux

package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kfake"
)

func TestWait(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		seeds []string
		pid   int
		want  error // nil: ready
	}{
		{"ready broker", context.Background(), fake.ListenAddrs(), 0, nil},
		{"ready broker, live pid", context.Background(), fake.ListenAddrs(), os.Getpid(), nil},
		{"deadline passed", cancelled, []string{closed}, 0, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wait(tc.ctx, tc.seeds, tc.pid)
			if tc.want == nil && err != nil {
				t.Fatalf("wait: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("wait = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestWaitBrokerExited checks that a dead broker process ends the wait at
// once rather than at a deadline (the context here has none), including when
// the port is held by something that accepts and never answers.
func TestWaitBrokerExited(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn // accepted, never answered, closed with the test
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		seed string
	}{
		{"connection refused", refused},
		{"port held, no answer", silent.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := wait(context.Background(), []string{tc.seed}, deadChild(t)); !errors.Is(err, errExited) {
				t.Fatalf("wait = %v, want %v", err, errExited)
			}
		})
	}
}

func TestExited(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  func(t *testing.T) int
		want bool
	}{
		{"running", func(*testing.T) int { return os.Getpid() }, false},
		{"zombie", deadChild, true},
		{"reaped", func(t *testing.T) int {
			cmd := exec.Command("true")
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			return cmd.Process.Pid
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exited(tc.pid(t)); got != tc.want {
				t.Fatalf("exited = %v, want %v", got, tc.want)
			}
		})
	}
}

// deadChild returns the pid of a child that has exited but is not reaped
// until the test ends: a zombie, as a crashed broker looks to its parent.
func deadChild(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	// waitid with WNOWAIT blocks until the child has exited and leaves it
	// unreaped. os/exec offers no such wait, hence the raw call.
	const pPID, wEXITED, wNOWAIT = 1, 4, 0x01000000
	var siginfo [128]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(cmd.Process.Pid),
			uintptr(unsafe.Pointer(&siginfo[0])), wEXITED|wNOWAIT, 0, 0)
		if errno == 0 {
			break
		}
		if errno != syscall.EINTR {
			t.Fatalf("waitid: %v", errno)
		}
	}
	return cmd.Process.Pid
}
