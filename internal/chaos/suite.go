package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Where a scenario's runs go.
const (
	onAny   = "any"   // kfake, and the last run on Apache Kafka when there is one
	onKafka = "kafka" // needs a real broker (a restart)
)

// Scenario is one fault and what must hold through it.
type Scenario struct {
	Name  string
	Fault string // what is done, for the table
	On    string // onAny or onKafka
	// Serial runs the runs one after the other (they share a fault of the
	// broker); otherwise a scenario's runs run at once.
	Serial bool
	// Subset puts one run of it in the default (make test) subset.
	Subset bool
	// Budget bounds one run.
	Budget time.Duration
	Run    func(ctx context.Context, r *Run) error
}

// Result is one run's outcome.
type Result struct {
	Scenario string
	N        int
	Kafka    string
	Counts   Counts
	Bound    int
	Exact    bool
	Err      error
	Pending  string
	Skipped  string
	Took     time.Duration
	Notes    []string
}

// Failed says why the run fails, or "".
func (r Result) Failed() string {
	switch {
	case r.Skipped != "":
		return ""
	case r.Pending != "":
		return ""
	case r.Err != nil:
		return r.Err.Error()
	case r.Counts.Lost > 0:
		return fmt.Sprintf("%d lost: %s", r.Counts.Lost, strings.Join(r.Counts.LostSample, "; "))
	case !r.Counts.Invariant():
		return "commit invariant broken: " + strings.Join(r.Counts.Violations, "; ")
	case r.Counts.Wrong > 0:
		return fmt.Sprintf("%d settled wrongly: %s", r.Counts.Wrong, strings.Join(r.Counts.WrongSample, "; "))
	case r.Counts.Unknown > 0:
		return fmt.Sprintf("%d acknowledged events nobody produced", r.Counts.Unknown)
	case r.Exact && r.Counts.Duplicates != r.Bound:
		return fmt.Sprintf("%d duplicates, want exactly %d", r.Counts.Duplicates, r.Bound)
	case r.Counts.Duplicates > r.Bound:
		return fmt.Sprintf("%d duplicates, above the bound %d", r.Counts.Duplicates, r.Bound)
	}
	return ""
}

// Options configure a suite.
type Options struct {
	// Full runs every scenario Runs times with the full faults; otherwise
	// one run of each subset scenario, on kfake.
	Full bool
	Runs int
	// Only, when set, selects scenarios by name.
	Only *regexp.Regexp
	// Bin is the atrelay binary; empty builds it.
	Bin string
	// Dir holds the binary, the configurations and every process's log.
	Dir string
	// Log receives progress lines.
	Log io.Writer
	// Parallel bounds the scenarios of the subset run at once.
	Parallel int
}

// Build builds cmd/atrelay into dir (with -race when race is set) and
// returns its path.
func Build(ctx context.Context, dir string, race bool) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build atrelay: %w", err)
	}
	bin := filepath.Join(dir, "atrelay")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, gobin, append(args, "github.com/atrelay/atrelay/cmd/atrelay")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build atrelay: %w\n%s", err, out)
	}
	return bin, nil
}

// RunSuite runs the scenarios and returns every run's result.
func RunSuite(ctx context.Context, o Options) ([]Result, error) {
	if o.Runs == 0 {
		o.Runs = 3
	}
	if o.Parallel == 0 {
		o.Parallel = 3
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Bin == "" {
		bin, err := Build(ctx, o.Dir, os.Getenv("ATRELAY_CHAOS_RACE") != "")
		if err != nil {
			return nil, err
		}
		o.Bin = bin
	}
	real := realKafka()
	var (
		mu      sync.Mutex
		results []Result
	)
	runOne := func(s Scenario, n int, kafka *Kafka) {
		res := runScenario(ctx, o, s, n, kafka)
		fmt.Fprintf(o.Log, "chaos: %-32s run %d on %-5s %6.1fs  %s\n", s.Name, n, res.Kafka, res.Took.Seconds(), verdict(res))
		mu.Lock()
		results = append(results, res)
		mu.Unlock()
	}
	sem := make(chan struct{}, o.Parallel)
	var subset sync.WaitGroup
	for _, s := range Scenarios() {
		if o.Only != nil && !o.Only.MatchString(s.Name) {
			continue
		}
		if !o.Full {
			// The subset: on kfake; Only picks any scenario, one run.
			if (!s.Subset && o.Only == nil) || s.On == onKafka {
				continue
			}
			subset.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; subset.Done() }()
				runOne(s, 1, nil)
			}()
			continue
		}
		var wg sync.WaitGroup
		for n := 1; n <= o.Runs; n++ {
			var kafka *Kafka
			switch {
			case s.On == onKafka:
				if real == nil {
					mu.Lock()
					results = append(results, Result{Scenario: s.Name, N: n, Kafka: "kafka", Skipped: "no real broker (run under deploy/kafka/with-broker.sh)"})
					mu.Unlock()
					continue
				}
				kafka = real
			case s.On == onAny && n == o.Runs && real != nil:
				kafka = real
			}
			if s.Serial {
				runOne(s, n, kafka)
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); runOne(s, n, kafka) }()
		}
		wg.Wait()
	}
	subset.Wait()
	return results, nil
}

func verdict(r Result) string {
	switch {
	case r.Skipped != "":
		return "SKIP " + r.Skipped
	case r.Pending != "":
		return "PENDING " + r.Pending
	case r.Failed() != "":
		return "FAIL " + r.Failed()
	}
	return fmt.Sprintf("ok (produced %d, delivered %d, dups %d/%d, dlq %d, parked %d, filtered %d, lost %d; %d commit requests (%d of an old generation) + %d samples checked)",
		r.Counts.Produced, r.Counts.Delivered, r.Counts.Duplicates, r.Bound, r.Counts.DLQ, r.Counts.Parked, r.Counts.Filtered,
		r.Counts.Lost, r.Counts.Requests, r.Counts.StaleCommits, r.Counts.Samples)
}

// runScenario runs one run on kafka (nil: a kfake of its own).
func runScenario(ctx context.Context, o Options, s Scenario, n int, kafka *Kafka) (res Result) {
	start := time.Now()
	res = Result{Scenario: s.Name, N: n, Kafka: "kfake"}
	defer func() { res.Took = time.Since(start) }()
	if kafka == nil {
		k, err := newFake()
		if err != nil {
			res.Err = err
			return res
		}
		defer k.close()
		kafka = k
	} else {
		res.Kafka = "kafka"
	}
	dir := filepath.Join(o.Dir, fmt.Sprintf("%s-%d-%s", strings.ReplaceAll(s.Name, " ", "-"), n, res.Kafka))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Err = err
		return res
	}
	budget := s.Budget
	if budget == 0 {
		budget = 3 * time.Minute
	}
	rctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	r := &Run{Scenario: s.Name, N: n, Full: o.Full, Dir: dir, Kafka: kafka, Settings: defaultSettings(), bin: o.Bin}
	r.prepare()
	defer r.close()
	err := s.Run(rctx, r)
	if err == nil && r.adm != nil {
		// The books close on what the broker holds: read with a context
		// of its own, so that a run that used its whole budget still
		// reports its ledger.
		rd, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err = r.readTopics(rd)
		cancel()
	}
	if r.stop != nil {
		r.stop()
		<-r.sampled
	}
	res.Err = err
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		res.Err = fmt.Errorf("did not end within %s: %w", budget, err)
	}
	if res.Err != nil {
		for _, p := range r.procs {
			res.Notes = append(res.Notes, fmt.Sprintf("%s log tail:\n%s", p.Name, p.tail(8)))
		}
	}
	res.Counts = r.Led.Counts()
	res.Bound, res.Exact, res.Pending = r.Bound, r.ExactDuplicates, r.Pending
	res.Notes = append(res.Notes, r.notes...)
	return res
}
