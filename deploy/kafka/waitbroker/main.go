// Command waitbroker waits until a Kafka broker answers a metadata request
// and its group coordinator answers too, or fails after a bounded time. The
// broker scripts (with-broker.sh, broker-ctl.sh) run it so that tests start
// only on a broker that can serve them.
//
// Usage: waitbroker [-timeout 90s] [-pid N] host:port[,host:port...]
//
// With -pid it fails as soon as that process (the broker's JVM) has exited,
// instead of waiting out the timeout on a broker that will never answer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	pid := flag.Int("pid", 0, "fail early once this process has exited (0: do not watch)")
	flag.Parse()
	if flag.NArg() != 1 || *timeout <= 0 {
		fmt.Fprintln(os.Stderr, "usage: waitbroker [-timeout D] [-pid N] host:port[,host:port...]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := wait(ctx, strings.Split(flag.Arg(0), ","), *pid)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "waitbroker: %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
}

// errExited is the cause of a wait ended by the broker process exiting.
var errExited = errors.New("broker process exited")

// wait polls until one ListBrokers and one ListGroups succeed. ListGroups is
// the stricter check: after a restart the broker answers metadata before its
// group coordinator has reloaded __consumer_offsets. With pid > 0 a watcher
// ends the wait as soon as that process exits, even mid-request (a request
// to a port something else holds can hang until its own timeout).
func wait(ctx context.Context, seeds []string, pid int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if pid > 0 {
		go watch(ctx, cancel, pid)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	start := time.Now()
	var last error
	for {
		if _, err := adm.ListBrokers(ctx); err != nil {
			last = fmt.Errorf("list brokers: %w", err)
		} else if _, err := adm.ListGroups(ctx); err != nil {
			last = fmt.Errorf("list groups: %w", err)
		} else {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w (last error: %v)",
				time.Since(start).Round(100*time.Millisecond), context.Cause(ctx), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// watch cancels ctx with errExited once pid has exited.
func watch(ctx context.Context, cancel context.CancelCauseFunc, pid int) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if exited(pid) {
			cancel(fmt.Errorf("pid %d: %w", pid, errExited))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// exited reports whether pid is gone or a zombie (dead, not yet reaped).
func exited(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	err = p.Signal(syscall.Signal(0))
	_ = p.Release()
	if errors.Is(err, os.ErrProcessDone) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false // no procfs: rely on kill alone
	}
	// The state follows the parenthesised command name, which may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
