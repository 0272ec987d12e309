// Command atrelay forwards Purchasely subscription events from Kafka to
// AT Internet / Piano Analytics. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/demo"
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
	{"offsets show", "--config FILE", "committed offset, end offset and lag per partition", func(fs *flag.FlagSet) action {
		cfgPath := configFlag(fs)
		return func(ctx context.Context, stdout, _ io.Writer) error {
			cfg, err := load(*cfgPath)
			if err != nil {
				return err
			}
			return app.Offsets(ctx, cfg, false, "", false, stdout)
		}
	}},
	{"offsets reset", "--config FILE --to earliest|latest|<RFC3339>|<p:o,...> [--execute]", "move the group's offsets; a dry run unless --execute; refuses while the group has members", func(fs *flag.FlagSet) action {
		cfgPath := configFlag(fs)
		to := fs.String("to", "", "reset target: earliest, latest, an RFC 3339 time, or partition:offset pairs")
		execute := fs.Bool("execute", false, "commit the new offsets (default: print them only)")
		return func(ctx context.Context, stdout, _ io.Writer) error {
			if *to == "" {
				return usageError{msg: "offsets reset: --to is required"}
			}
			cfg, err := load(*cfgPath)
			if err != nil {
				return err
			}
			return app.Offsets(ctx, cfg, true, *to, *execute, stdout)
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
	if c == nil && args[0] == "offsets" {
		var help []string
		for _, sub := range []string{"show", "reset"} {
			c, _ := find([]string{"offsets", sub})
			fs, _ := c.flagSet()
			help = append(help, c.help(fs))
		}
		if len(args) > 1 && slices.Contains([]string{"-h", "-help", "--help"}, args[1]) {
			fmt.Fprint(stdout, strings.Join(help, "\n"))
			return nil
		}
		return usageError{"offsets: show or reset?", strings.Join(help, "\n")}
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

// find returns the command that args start with (one word, or two for
// offsets) and the rest of args; nil and args if none.
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
