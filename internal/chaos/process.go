package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one atrelay process. Its stdout and stderr go to a file and
// are kept line by line, so scenarios wait on log lines (WaitLog) as an
// operator reads them.
type Process struct {
	Name string
	cmd  *exec.Cmd

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced at each line and at exit
	done    chan struct{} // closed once the process has exited
	code    int
}

// startProcess starts bin with args in dir, its output in dir/name.log.
// The process has its own process group (a signal to the test's group
// does not reach it) and is killed if this process dies (Pdeathsig).
func startProcess(bin, dir, name string, args ...string) (*Process, error) {
	logf, err := os.Create(dir + "/" + name + ".log")
	if err != nil {
		return nil, fmt.Errorf("process %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("process %s: start: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, changed: make(chan struct{}), done: make(chan struct{}), code: -1}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-read
		logf.Close()
		p.mu.Lock()
		p.code = cmd.ProcessState.ExitCode()
		if p.code == -1 && err != nil {
			p.code = -1 // killed by a signal
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s to %s: %w", sig, p.Name, err)
	}
	return nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it).
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return 0, fmt.Errorf("%s did not exit: %w", p.Name, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code, nil
}

// Kill kills the process and waits for it to exit.
func (p *Process) Kill() {
	p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once it runs
	p.cmd.Process.Kill()
	<-p.done
}

// Lines returns the lines written so far.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Mark returns the number of lines written so far, for WaitLog.
func (p *Process) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// WaitLog waits for a line at or after line from containing every one of
// subs, and returns its index.
func (p *Process) WaitLog(ctx context.Context, from int, subs ...string) (int, error) {
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if containsAll(p.lines[i], subs) {
				p.mu.Unlock()
				return i, nil
			}
		}
		from = len(p.lines)
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			// One last look: the lines written before the exit.
			p.mu.Lock()
			for i := from; i < len(p.lines); i++ {
				if containsAll(p.lines[i], subs) {
					p.mu.Unlock()
					return i, nil
				}
			}
			p.mu.Unlock()
			return 0, fmt.Errorf("%s exited without logging %q", p.Name, subs)
		case <-ctx.Done():
			return 0, fmt.Errorf("%s did not log %q: %w", p.Name, subs, ctx.Err())
		}
	}
}

// Find returns the lines at or after from containing every one of subs.
func (p *Process) Find(from int, subs ...string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for i := from; i < len(p.lines); i++ {
		if containsAll(p.lines[i], subs) {
			out = append(out, p.lines[i])
		}
	}
	return out
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// tail returns the last n lines, for failure messages.
func (p *Process) tail(n int) string {
	lines := p.Lines()
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitTimeout is Wait with its own deadline.
func (p *Process) waitTimeout(d time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.Wait(ctx)
}
