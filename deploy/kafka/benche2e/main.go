// Command benche2e measures atrelay end to end, as an operator would run
// it: the real binary (make build) against a real Apache Kafka broker
// (deploy/kafka/with-broker.sh) and a collector, each in its own process, so
// that events/s, CPU per event (/proc/<pid>/stat) and peak RSS
// (/proc/<pid>/status VmHWM) are atrelay's alone. `make bench-e2e` runs it.
//
// Workloads (as internal/relay's BenchmarkEndToEnd defines them):
//
//   - per-visitor: -n events preloaded, one per visitor: one request per event;
//   - replay: -n events preloaded, 20 per visitor, merged into few requests;
//   - backlog: -backlog events (1,000,000), 20 per visitor;
//   - steady: -rate events/s for -steady-for, produced while atrelay runs;
//     delivery latency (record timestamp to the collector's 2xx) p50/p99.
//
// Each run has its own topic and group, and checks at the end that the
// group committed every partition's end offset. The table is printed and
// appended, with the commit, the date and the load average, to -results.
//
// With -repeat N each workload runs N times and the table adds its median;
// with -baseline BIN a second binary runs alternately with -atrelay, each
// on its own topic, for a change's before and after on the same machine.
//
// Usage: benche2e [flags]; benche2e collector [-listen ADDR] [-latency] is
// the collector process the driver starts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/schemas"
)

// options are the driver's flags.
type options struct {
	atrelay    string
	brokers    []string
	n          int
	backlog    int
	rate       int
	steadyFor  time.Duration
	linger     time.Duration
	runTimeout time.Duration
	timeout    time.Duration
	results    string
	workloads  []string
	// repeat runs each workload this many times; the table adds a median row.
	repeat int
	// baseline, when set, is a second binary run alternately with atrelay
	// on each workload: a lever's before and after on the same broker,
	// interleaved so that the machine's drift falls on both.
	baseline string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benche2e:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "collector" {
		fs := flag.NewFlagSet("benche2e collector", flag.ContinueOnError)
		listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
		latency := fs.Bool("latency", false, "record each event's delivery latency (now - event_date)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return runCollector(ctx, *listen, *latency, stdout)
	}
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	return drive(ctx, opts, stdout, stderr)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benche2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.atrelay, "atrelay", "bin/atrelay", "the atrelay binary to measure (make build)")
	brokers := fs.String("brokers", os.Getenv("ATRELAY_TEST_BROKERS"), "Kafka brokers, comma-separated (default $ATRELAY_TEST_BROKERS, set by deploy/kafka/with-broker.sh)")
	fs.IntVar(&o.n, "n", 300000, "events preloaded for per-visitor and replay")
	fs.IntVar(&o.backlog, "backlog", 1000000, "events preloaded for the backlog run")
	fs.IntVar(&o.rate, "rate", 5000, "events/s produced in the steady run")
	fs.DurationVar(&o.steadyFor, "steady-for", 60*time.Second, "how long the steady run produces")
	fs.DurationVar(&o.linger, "linger", 20*time.Millisecond, "delivery.linger of atrelay's config (other delivery keys: defaults)")
	fs.DurationVar(&o.runTimeout, "run-timeout", 10*time.Minute, "longest a throughput run may take once atrelay starts")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Minute, "longest the whole benchmark may take")
	fs.StringVar(&o.results, "results", "deploy/kafka/benche2e/RESULTS.md", "file the table is appended to (empty: none)")
	wl := fs.String("workloads", "per-visitor,replay,backlog,steady", "workloads to run, comma-separated")
	fs.IntVar(&o.repeat, "repeat", 1, "runs of each workload; above 1 the table adds each one's median")
	fs.StringVar(&o.baseline, "baseline", "", "a second atrelay binary run alternately with -atrelay (before and after a change)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *brokers == "" {
		return o, errors.New("-brokers: empty and ATRELAY_TEST_BROKERS unset: run under deploy/kafka/with-broker.sh (make bench-e2e)")
	}
	o.brokers = strings.Split(*brokers, ",")
	o.workloads = strings.Split(*wl, ",")
	for _, w := range o.workloads {
		switch w {
		case "per-visitor", "replay", "backlog", "steady":
		default:
			return o, fmt.Errorf("-workloads: unknown workload %q (want per-visitor, replay, backlog, steady)", w)
		}
	}
	switch {
	case o.n <= 0:
		return o, fmt.Errorf("-n: %d: want > 0", o.n)
	case o.backlog <= 0:
		return o, fmt.Errorf("-backlog: %d: want > 0 (leave backlog out of -workloads to skip it)", o.backlog)
	case o.rate <= 0 || o.steadyFor <= 0:
		return o, errors.New("-rate and -steady-for: want > 0")
	case o.linger < 0 || o.runTimeout <= 0 || o.timeout <= 0:
		return o, errors.New("-linger, -run-timeout, -timeout: want >= 0, > 0, > 0")
	case o.repeat < 1:
		return o, fmt.Errorf("-repeat: %d: want >= 1", o.repeat)
	}
	if _, err := os.Stat(o.atrelay); err != nil {
		return o, fmt.Errorf("-atrelay: %w (make build)", err)
	}
	if o.baseline != "" {
		if _, err := os.Stat(o.baseline); err != nil {
			return o, fmt.Errorf("-baseline: %w", err)
		}
	}
	return o, nil
}

// drive runs the workloads in order, then prints the table and appends it
// to the results file. A failed run is a row saying so; the others still
// run.
func drive(ctx context.Context, opts options, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benche2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(opts.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.ProducerLinger(10*time.Millisecond))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	reg := srfake.New()
	defer reg.Close()
	reg.SeedSchema("benche2e-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	d := &driver{opts: opts, dir: dir, adm: kadm.NewClient(cl), cl: cl, registry: reg.URL(), self: self, log: stderr}

	load0 := loadAvg()
	began := time.Now().UTC()
	var rows []string
	var failed []string
	for _, name := range opts.workloads {
		w := workload{name: name, events: opts.n, perVisitor: 20}
		switch name {
		case "per-visitor":
			w.perVisitor = 1
		case "backlog":
			w.events = opts.backlog
		case "steady":
			w.perVisitor, w.steady = 1, true
			w.events = int(float64(opts.rate) * opts.steadyFor.Seconds())
		}
		runs := map[string][]result{}
		for i, b := range schedule(opts) {
			w.bin, w.label = b.bin, b.label
			fmt.Fprintf(stderr, "benche2e: %s: %d events (load average %s)\n", w.display(), w.events, loadAvg())
			var r result
			if w.steady {
				r, err = d.runSteady(ctx, w)
			} else {
				r, err = d.runThroughput(ctx, w)
			}
			if err != nil {
				fmt.Fprintf(stderr, "benche2e: %s (run %d): %v\n", w.display(), i+1, err)
				failed = append(failed, w.display())
				rows = append(rows, fmt.Sprintf("| %s | %d | failed: %s | | | | | |", w.display(), w.events, oneLine(err)))
				if ctx.Err() != nil {
					break
				}
				continue
			}
			row := r.row(opts.linger)
			fmt.Fprintln(stderr, "benche2e:", row)
			rows = append(rows, row)
			runs[w.label] = append(runs[w.label], r)
		}
		if opts.repeat > 1 {
			for _, b := range binaries(opts) {
				if rs := runs[b.label]; len(rs) > 0 {
					rows = append(rows, medianRow(rs, opts.linger))
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	commit := fmt.Sprintf("tree %s, binary %s", describe(), binaryCommit(opts.atrelay))
	if opts.baseline != "" {
		commit += fmt.Sprintf(", baseline %s", binaryCommit(opts.baseline))
	}
	report := renderReport(began, commit, load0, loadAvg(), opts, rows)
	fmt.Fprint(stdout, report)
	if opts.results != "" {
		f, err := os.OpenFile(opts.results, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("results: %w", err)
		}
		if st, serr := f.Stat(); serr == nil && st.Size() == 0 {
			_, err = io.WriteString(f, resultsPreamble)
		}
		if err == nil {
			_, err = io.WriteString(f, "\n"+report)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("results: %w", err)
		}
		fmt.Fprintf(stderr, "benche2e: appended to %s\n", opts.results)
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// resultsPreamble opens a new results file.
const resultsPreamble = `# atrelay end-to-end benchmark results

Appended by ` + "`make bench-e2e`" + ` (deploy/kafka/benche2e), one section a run, newest last.
Each figure is atrelay's own process: events/s from its start to the last event
at the collector (steady: the produced rate), CPU µs/event from /proc/<pid>/stat
(utime+stime; steady: over the measured minute), peak RSS from VmHWM. The
machine is shared: compare runs at a similar load average.
`

const tableHeader = "| workload | events | events/s | CPU µs/event | peak RSS MiB | committed == end | latency p50 / p99 ms | delivered |\n|---|---|---|---|---|---|---|---|\n"

// row renders r as a table row.
func (r result) row(linger time.Duration) string {
	lat := "—"
	if r.latency != nil {
		ok := "yes"
		if !r.latencyOK {
			ok = "NO"
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		lat = fmt.Sprintf("%.1f / %.1f (max %.0f; p99 ≤ linger+50ms = %s: %s; Kafka alone %.1f / %.1f)", r.latency.P50ms, r.latency.P99ms, r.latency.MaxMs,
			linger+50*time.Millisecond, ok, ms(r.kafkaP50), ms(r.kafkaP99))
	}
	perSec := float64(r.events) / r.wall.Seconds()
	return fmt.Sprintf("| %s | %d | %.1fk | %.1f | %.0f | %s | %s | %d |", r.display(), r.events, perSec/1000,
		float64(r.cpu.Microseconds())/float64(r.events), float64(r.peakRSS)/(1<<20), r.committed, lat, r.delivered)
}

// renderReport is one results section: when, what, on what load, the table.
func renderReport(began time.Time, commit, load0, load1 string, o options, rows []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s · %s\n\n", began.Format(time.RFC3339), commit)
	var what []string
	for _, w := range o.workloads {
		switch w {
		case "per-visitor", "replay":
			what = append(what, fmt.Sprintf("%s N = %d", w, o.n))
		case "backlog":
			what = append(what, fmt.Sprintf("backlog %d", o.backlog))
		case "steady":
			what = append(what, fmt.Sprintf("steady %d events/s for %s", o.rate, o.steadyFor))
		}
	}
	runs := ""
	if o.repeat > 1 {
		runs = fmt.Sprintf(" Each workload %d times, then its median row.", o.repeat)
	}
	if o.baseline != "" {
		runs += " The baseline binary ran alternately with atrelay's, on the same broker (rows \"(baseline)\")."
	}
	fmt.Fprintf(&b, "Load average (1/5/15 min) %s at start, %s at end; %d CPUs. %s; delivery.linger %s, other delivery keys default; GOGC=%q GOMEMLIMIT=%q.%s\n\n",
		load0, load1, runtime.NumCPU(), strings.Join(what, ", "), o.linger, os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"), runs)
	b.WriteString(tableHeader)
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	return b.String()
}

// describe is `git describe --always --dirty` of the working directory.
func describe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown commit"
	}
	return strings.TrimSpace(string(out))
}

// binaryCommit is the commit stamped into the atrelay binary (make build's
// ldflags), from `atrelay version`: the code measured, which may differ
// from the tree's when the binary was built elsewhere.
func binaryCommit(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "commit" {
			return f[1]
		}
	}
	return "unknown"
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// oneLine is err's first line, fit for a table cell.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return strings.ReplaceAll(s, "|", "/")
}
