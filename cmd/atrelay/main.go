// Command atrelay forwards Purchasely subscription events from Kafka to
// AT Internet / Piano Analytics. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/demo"
	"github.com/atrelay/atrelay/internal/dlqreplay"
	"github.com/atrelay/atrelay/internal/groupoffsets"
	"github.com/atrelay/atrelay/internal/sandbox"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go watchSignals(sigs, cancel, func(code int) {
		fmt.Fprintln(os.Stderr, "atrelay: second signal, exiting now")
		os.Exit(code)
	})
	os.Exit(cli(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// cli runs the command line args and returns the exit code: 0, 1 for an
// error, 2 for a usage error. Errors go to stderr, one "atrelay: " line
// each (a configuration reports all of its errors at once).
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	for line := range strings.Lines(err.Error()) {
		fmt.Fprint(stderr, "atrelay: ", line)
	}
	fmt.Fprintln(stderr)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprint(stderr, "\n", ue.help)
		return 2
	}
	return 1
}

// containerShare is the part of a container's memory limit given to the Go
// heap: the rest is for what the Go runtime does not count (thread stacks
// outside Go, the binary's text) and for margin, as automemlimit does.
const containerShare = 0.9

// setMemoryLimit sizes the garbage collector to the memory the service may
// use (README, Memory): unless the environment sets GOMEMLIMIT (or
// AUTOMEMLIMIT=off), the Go memory limit becomes containerShare of the
// container's memory limit, as cgroup reports it, or else buffer, what the
// configured buffer needs (relay.Delivery.MemoryLimit). Either way the
// heap stays near what the service needs instead of growing to twice its
// live size between collections. It logs the limit and where it comes from,
// and returns what restores the previous limit (for tests; a process
// exits after run).
func setMemoryLimit(log *slog.Logger, cgroup memlimit.Provider, buffer int64) (restore func()) {
	prev := debug.SetMemoryLimit(-1)
	restore = func() { debug.SetMemoryLimit(prev) }
	source := "container"
	provider := func() (uint64, error) {
		limit, err := cgroup()
		if err == nil {
			return uint64(float64(limit) * containerShare), nil
		}
		if !errors.Is(err, memlimit.ErrNoLimit) {
			log.Warn("memory: cannot read the container's memory limit; the memory limit follows max_buffered_events", "error", err)
		}
		source = "max_buffered_events"
		return uint64(buffer), nil
	}
	if v, set := os.LookupEnv("GOMEMLIMIT"); set && v == "" {
		// The runtime reads an empty GOMEMLIMIT as unset, automemlimit as
		// an explicit limit: left, it would leave the service with none.
		os.Unsetenv("GOMEMLIMIT")
	}
	limit, err := memlimit.Set(memlimit.WithRatio(1), memlimit.WithProvider(provider))
	if err != nil {
		log.Warn("memory: no memory limit set", "error", err)
		return restore
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		source = "GOMEMLIMIT"
	} else if v, set := os.LookupEnv("AUTOMEMLIMIT"); set && v == "off" {
		source = "AUTOMEMLIMIT=off"
	}
	if limit == math.MaxInt64 {
		log.Info("memory limit: none", "source", source)
		return restore
	}
	log.Info("memory limit", "limit_mib", limit>>20, "source", source)
	return restore
}

// usageError is a command line that does not say what to do; help is the
// usage to show with it.
type usageError struct{ msg, help string }

func (e usageError) Error() string { return e.msg }

// command is one of atrelay's commands.
type command struct {
	name     string // as typed: "run", "offsets reset"
	synopsis string // what follows the name
	summary  string
	// flags defines the command's flags on fs and returns what runs it,
	// once they are parsed.
	flags func(fs *flag.FlagSet) action
}

type action func(ctx context.Context, stdout, stderr io.Writer) error

// commands are atrelay's commands, in the order usage shows them.
var commands = []command{
	{"run", "--config FILE [--log-level LEVEL] [--log-format FORMAT]", "run the service", func(fs *flag.FlagSet) action {
		cfgPath := configFlag(fs)
		level := fs.String("log-level", "info", "least severe level logged: debug, info, warn or error")
		format := fs.String("log-format", "auto", "log format: json, text, or auto (text on a terminal)")
		return func(ctx context.Context, _, stderr io.Writer) error {
			log, err := newLogger(stderr, *format, *level)
			if err != nil {
				return usageError{msg: "run: " + err.Error()}
			}
			cfg, err := load(*cfgPath)
			if err != nil {
				return err
			}
			defer setMemoryLimit(log, memlimit.FromCgroup, cfg.Delivery.Relay.MemoryLimit())()
			return app.Serve(ctx, cfg, log)
		}
	}},
	{"check", "--config FILE [--connect | --print]", "validate the config; print what each integration sends", func(fs *flag.FlagSet) action {
		cfgPath := configFlag(fs)
		connect := fs.Bool("connect", false, "also reach the brokers, the registry and each collect domain")
		printCfg := fs.Bool("print", false, "print the effective configuration instead (defaults applied, secrets <redacted>)")
		return func(ctx context.Context, stdout, _ io.Writer) error {
			if *connect && *printCfg {
				return usageError{msg: "check: --connect and --print do not go together"}
			}
			cfg, err := load(*cfgPath)
			if err != nil {
				return err
			}
			if *printCfg {
				out, err := config.Marshal(cfg)
				if err != nil {
					return err
				}
				_, err = stdout.Write(out)
				return err
			}
			return app.Check(ctx, cfg, *connect, stdout)
		}
	}},
	{"demo", "[--events N]", "everything embedded: Kafka, registry, collector, sample events", func(fs *flag.FlagSet) action {
		events := fs.Int("events", 5000, "number of sample events")
		return func(ctx context.Context, stdout, _ io.Writer) error {
			_, err := demo.Run(ctx, demo.Options{Events: *events, Out: stdout})
			return err
		}
	}},
	{"collector", "[--listen ADDR]", "a sandbox collect server that checks and prints every hit", func(fs *flag.FlagSet) action {
		listen := fs.String("listen", "127.0.0.1:8088", "address to listen on")
		return func(ctx context.Context, stdout, _ io.Writer) error {
			c := sandbox.New(sandbox.WithLog(stdout), sandbox.WithMaxStoredHits(0))
			return c.ListenAndServe(ctx, *listen, func(a net.Addr) {
				fmt.Fprintf(stdout, "sandbox collector listening on http://%s (use it as collect_domain)\n", a)
			})
		}
	}},
	{"offsets show", "--config FILE [--output text|json]", "committed offset, log, lag and owning member per partition", func(fs *flag.FlagSet) action {
		cfgPath := configFlag(fs)
		output := fs.String("output", "text", "output `FORMAT`: text or json (lag, member id, client id and host per partition)")
		return func(ctx context.Context, stdout, _ io.Writer) error {
			if *output != "text" && *output != "json" {
				return usageError{msg: fmt.Sprintf("offsets show: --output %q: want text or json", *output)}
			}
			cfg, err := load(*cfgPath)
			if err != nil {
				return err
			}
			return app.ShowOffsets(ctx, cfg, *output == "json", stdout)
		}
	}},
	{"offsets reset", "--config FILE (--to earliest|latest|<RFC3339>|<p:o,...> | --shift-by N | --by-duration D | --from-file FILE) [--partitions P,...] [--export FILE] [--execute]",
		"move the group's offsets; a dry run unless --execute; refuses while the group has members", func(fs *flag.FlagSet) action {
			cfgPath := configFlag(fs)
			var (
				strategies []string // the strategy flags given, in order
				strategy   groupoffsets.Strategy
				partitions []int32
				fromFile   string
			)
			set := func(name string, parse func(string) (groupoffsets.Strategy, error)) func(string) error {
				return func(v string) error {
					s, err := parse(v)
					if err == nil {
						strategies, strategy = append(strategies, "--"+name), s
					}
					return err
				}
			}
			fs.Func("to", "reset to `TARGET`: earliest, latest, an RFC 3339 time, or partition:offset pairs (0:120,3:0; out of the log is an error)", set("to", groupoffsets.ParseTo))
			fs.Func("shift-by", "move each committed offset by `N` (negative: back), clamped to the log", set("shift-by", func(v string) (groupoffsets.Strategy, error) {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return groupoffsets.Strategy{}, errors.New("want an integer")
				}
				return groupoffsets.ShiftBy(n), nil
			}))
			fs.Func("by-duration", "reset to the first record at or after now minus `D` (a Go duration: 2h, 90m)", set("by-duration", func(v string) (groupoffsets.Strategy, error) {
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					return groupoffsets.Strategy{}, errors.New("want a positive duration with a unit (2h, 90m)")
				}
				return groupoffsets.ByDuration(d), nil
			}))
			fs.Func("from-file", "apply the plan in `FILE`, saved with --export or by kafka-consumer-groups --export (CSV topic,partition,offset, or JSON if FILE ends in .json), clamped to the log", func(v string) error {
				if v == "" {
					return errors.New("want a file")
				}
				strategies, fromFile = append(strategies, "--from-file"), v
				return nil
			})
			fs.Func("partitions", "only these `PARTITIONS` (0,3); the others keep their offsets", func(v string) (err error) {
				partitions, err = groupoffsets.ParsePartitions(v)
				return err
			})
			export := fs.String("export", "", "also write the plan to `FILE`: CSV as kafka-consumer-groups --export writes it, JSON if FILE ends in .json")
			execute := fs.Bool("execute", false, "commit the new offsets (default: print them only)")
			return func(ctx context.Context, stdout, _ io.Writer) error {
				switch len(strategies) {
				case 0:
					return usageError{msg: "offsets reset: one of --to, --shift-by, --by-duration or --from-file is required"}
				case 1:
				default:
					if strategies[0] == strategies[1] {
						return usageError{msg: fmt.Sprintf("offsets reset: %s given twice", strategies[0])}
					}
					return usageError{msg: fmt.Sprintf("offsets reset: %s and %s do not go together", strategies[0], strategies[1])}
				}
				if fromFile != "" {
					strategy = groupoffsets.FromPlan(groupoffsets.Plan{})
				}
				if partitions != nil {
					var err error
					if strategy, err = strategy.Only(partitions); err != nil {
						return usageError{msg: "offsets reset: " + err.Error()}
					}
				}
				if fromFile != "" {
					plan, err := groupoffsets.ReadPlanFile(fromFile)
					if err != nil {
						return err
					}
					strategy = groupoffsets.FromPlan(plan)
				}
				cfg, err := load(*cfgPath)
				if err != nil {
					return err
				}
				return app.ResetOffsets(ctx, cfg, strategy, *export, *execute, stdout)
			}
		}},
	{"dlq replay", "--config FILE [--reason R]... [--partition P [--offset O]] [--since TIME] [--execute]",
		"put dead-lettered records back on their source topic; a dry run unless --execute", func(fs *flag.FlagSet) action {
			cfgPath := configFlag(fs)
			var o dlqreplay.Options
			fs.Func("reason", "replay records dead-lettered for `REASON` (atrelay.reason: http_400, corrupt, …); repeatable; required with --execute", func(v string) error {
				if v == "" {
					return errors.New("want a reason")
				}
				o.Reasons = append(o.Reasons, v)
				return nil
			})
			fs.Func("partition", "only records dead-lettered from `PARTITION` of the source topic", func(v string) error {
				p, err := strconv.ParseInt(v, 10, 32)
				if err != nil || p < 0 {
					return errors.New("want a partition number")
				}
				o.Partition = new(int32(p))
				return nil
			})
			fs.Func("offset", "only the record dead-lettered from `OFFSET` of --partition", func(v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 {
					return errors.New("want an offset")
				}
				o.Offset = &n
				return nil
			})
			fs.Func("since", "read only what was dead-lettered at or after `TIME` (RFC 3339); default: the whole topic", func(v string) (err error) {
				o.Since, err = time.Parse(time.RFC3339Nano, v)
				if err != nil {
					return errors.New("want an RFC 3339 time (2026-11-01T00:00:00Z)")
				}
				return nil
			})
			fs.BoolVar(&o.Execute, "execute", false, "produce the records (default: print what would be replayed)")
			return func(ctx context.Context, stdout, _ io.Writer) error {
				if o.Offset != nil && o.Partition == nil {
					return usageError{msg: "dlq replay: --offset needs --partition"}
				}
				if o.Execute && len(o.Reasons) == 0 {
					return usageError{msg: "dlq replay: --execute needs at least one --reason (a dry run lists the reasons present)"}
				}
				cfg, err := load(*cfgPath)
				if err != nil {
					return err
				}
				return app.Replay(ctx, cfg, o, stdout)
			}
		}},
	{"send-test", "--config FILE --integration NAME", "one test hit, to see it arrive in Piano", func(fs *flag.FlagSet) action {
		cfgPath := configFlag(fs)
		name := fs.String("integration", "", "the integration to send a test hit for")
		return func(ctx context.Context, stdout, _ io.Writer) error {
			if *name == "" {
				return usageError{msg: "send-test: --integration is required"}
			}
			cfg, err := load(*cfgPath)
			if err != nil {
				return err
			}
			return app.SendTest(ctx, cfg, *name, stdout)
		}
	}},
	{"version", "", "print the version, commit, build date, and Go and franz-go versions (also --version)", func(fs *flag.FlagSet) action {
		return func(_ context.Context, stdout, _ io.Writer) error {
			printVersion(stdout, app.ReadBuildInfo())
			return nil
		}
	}},
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "configuration file (YAML)")
}

// run runs one command line (without the program name).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"a command is required", usage()}
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return run(ctx, slices.Concat(args[1:], []string{"--help"}), stdout, stderr)
		}
		fmt.Fprint(stdout, usage())
		return nil
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	c, rest := find(args)
	if subs := subcommands(args[0]); c == nil && len(subs) > 0 {
		var help, names []string
		for _, sub := range subs {
			fs, _ := sub.flagSet()
			help = append(help, sub.help(fs))
			names = append(names, strings.TrimPrefix(sub.name, args[0]+" "))
		}
		if len(args) > 1 && slices.Contains([]string{"-h", "-help", "--help"}, args[1]) {
			fmt.Fprint(stdout, strings.Join(help, "\n"))
			return nil
		}
		return usageError{args[0] + ": " + strings.Join(names, " or ") + "?", strings.Join(help, "\n")}
	}
	if c == nil {
		return usageError{fmt.Sprintf("unknown command %q", args[0]), usage()}
	}
	fs, act := c.flagSet()
	help := c.help(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, help)
			return nil
		}
		return usageError{c.name + ": " + err.Error(), help}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q (flags go before arguments; %s takes none)", c.name, fs.Arg(0), c.name), help}
	}
	err := act(ctx, stdout, stderr)
	var ue usageError
	if errors.As(err, &ue) && ue.help == "" {
		ue.help = help
		return ue
	}
	return err
}

// subcommands returns the commands whose name is word and another
// ("offsets" has show and reset).
func subcommands(word string) []*command {
	var subs []*command
	for i := range commands {
		if strings.HasPrefix(commands[i].name, word+" ") {
			subs = append(subs, &commands[i])
		}
	}
	return subs
}

// find returns the command that args start with (one word, or two for
// offsets and dlq) and the rest of args; nil and args if none.
func find(args []string) (*command, []string) {
	for i := range commands {
		words := strings.Fields(commands[i].name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return &commands[i], args[len(words):]
		}
	}
	return nil, args
}

// flagSet returns the command's flags and what runs it once they are
// parsed. The flag package prints nothing: run returns its errors and
// prints the help.
func (c *command) flagSet() (*flag.FlagSet, action) {
	fs := flag.NewFlagSet("atrelay "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, c.flags(fs)
}

// help is the command's --help: its synopsis, what it does and its flags.
func (c *command) help(fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s.\n", strings.TrimSpace("atrelay "+c.name+" "+c.synopsis), strings.ToUpper(c.summary[:1])+c.summary[1:])
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nFlags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return b.String()
}

// usage is `atrelay --help`.
func usage() string {
	var b strings.Builder
	b.WriteString("atrelay forwards Purchasely subscription events from Kafka to Piano Analytics.\n\nUsage: atrelay COMMAND [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	b.WriteString("\nRun 'atrelay COMMAND --help' for its flags. Exit codes: 0 done (also after a\nSIGINT/SIGTERM), 1 an error, 2 a usage error, 130 a second signal later than 1s.\n")
	return b.String()
}

func load(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{msg: "--config is required"}
	}
	return config.Load(path)
}

// printVersion prints b, one "key value" line each; "unknown" for what
// the build did not record.
func printVersion(w io.Writer, b app.BuildInfo) {
	or := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	commit := or(b.Commit)
	if b.Modified {
		commit += " (modified)"
	}
	fmt.Fprintf(w, "atrelay %s\ncommit   %s\nbuilt    %s\ngo       %s\nfranz-go %s\n", b.Version, commit, or(b.Date), or(b.Go), or(b.FranzGo))
}
