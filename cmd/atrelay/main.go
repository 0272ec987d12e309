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
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/demo"
	"github.com/atrelay/atrelay/internal/redact"
	"github.com/atrelay/atrelay/internal/sandbox"
)

const usage = `atrelay forwards Purchasely subscription events from Kafka to Piano Analytics.

Usage:
  atrelay run       --config FILE          run the service
  atrelay check     --config FILE [--connect]  validate the config; print what each integration sends
  atrelay demo      [--events N]           everything embedded: Kafka, registry, collector, sample events
  atrelay collector [--listen ADDR]        a sandbox collect server that checks and prints every hit
  atrelay offsets show  --config FILE      committed offset, end offset and lag per partition
  atrelay offsets reset --config FILE --to earliest|latest|<RFC3339>|<p:o,...> [--execute]
                                           dry run unless --execute; refuses while the group has members
  atrelay send-test --config FILE --integration NAME   one test hit, to see it arrive in Piano
  atrelay version
`

func main() {
	// The first signal cancels ctx (graceful shutdown); a second one exits
	// at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		fmt.Fprintln(os.Stderr, "atrelay: second signal, exiting now")
		os.Exit(130)
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "atrelay:", err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"a command is required"}
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	logFormat := fs.String("log-format", "auto", "log format: json, text, or auto (text on a terminal)")
	switch cmd {
	case "run":
		if err := fs.Parse(args); err != nil {
			return usageError{err.Error()}
		}
		cfg, err := load(*cfgPath)
		if err != nil {
			return err
		}
		log := newLogger(stderr, *logFormat)
		return app.Serve(ctx, cfg, log)
	case "check":
		connect := fs.Bool("connect", false, "also reach the brokers, the registry and each collect domain")
		if err := fs.Parse(args); err != nil {
			return usageError{err.Error()}
		}
		cfg, err := load(*cfgPath)
		if err != nil {
			return err
		}
		return app.Check(ctx, cfg, *connect, stdout)
	case "demo":
		events := fs.Int("events", 5000, "number of sample events")
		if err := fs.Parse(args); err != nil {
			return usageError{err.Error()}
		}
		_, err := demo.Run(ctx, demo.Options{Events: *events, Out: stdout})
		return err
	case "collector":
		listen := fs.String("listen", "127.0.0.1:8088", "address to listen on")
		if err := fs.Parse(args); err != nil {
			return usageError{err.Error()}
		}
		c := sandbox.New(sandbox.WithLog(stdout), sandbox.WithMaxStoredHits(0))
		return c.ListenAndServe(ctx, *listen, func(a net.Addr) {
			fmt.Fprintf(stdout, "sandbox collector listening on http://%s (use it as collect_domain)\n", a)
		})
	case "offsets":
		if len(args) == 0 || (args[0] != "show" && args[0] != "reset") {
			return usageError{"offsets: show or reset"}
		}
		sub := args[0]
		to := fs.String("to", "", "reset target: earliest, latest, an RFC 3339 time, or partition:offset pairs")
		execute := fs.Bool("execute", false, "commit the new offsets (default: print them only)")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err.Error()}
		}
		cfg, err := load(*cfgPath)
		if err != nil {
			return err
		}
		if sub == "reset" && *to == "" {
			return usageError{"offsets reset: --to is required"}
		}
		return app.Offsets(ctx, cfg, sub == "reset", *to, *execute, stdout)
	case "send-test":
		name := fs.String("integration", "", "the integration to send a test hit for")
		if err := fs.Parse(args); err != nil {
			return usageError{err.Error()}
		}
		if *name == "" {
			return usageError{"send-test: --integration is required"}
		}
		cfg, err := load(*cfgPath)
		if err != nil {
			return err
		}
		return app.SendTest(ctx, cfg, *name, stdout)
	case "version":
		fmt.Fprintln(stdout, app.UserAgent)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

func load(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{"--config is required"}
	}
	return config.Load(path)
}

// newLogger logs JSON in production and text in a terminal.
func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	// redact.Handler: a URL with credentials (a registry written as
	// https://user:key@host) never reaches the log, whoever logs it.
	if format == "text" {
		return slog.New(redact.Handler(slog.NewTextHandler(w, nil)))
	}
	return slog.New(redact.Handler(slog.NewJSONHandler(w, nil)))
}
