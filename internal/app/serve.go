package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/groupoffsets"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/redact"
	"github.com/atrelay/atrelay/internal/telemetry"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// Serve runs `atrelay run`: telemetry, health endpoints and the relay, until
// ctx ends and the relay has shut down (stop fetching, flush, settle,
// commit, leave the group), then flushes telemetry.
func Serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	tel, err := telemetry.Setup(cfg.Telemetry.ServiceName, Version)
	if err != nil {
		return err
	}
	health := &telemetry.Health{}
	var tp trace.TracerProvider
	if tel.Tracing != nil {
		tp = tel.Tracing
	}
	svc, err := Build(cfg, Options{
		TracerProvider: tp,
		Logger:         log,
		Metrics:        tel.Metrics,
		OnReady:        health.SetReady,
		SinkHooks: func(c *atinternet.Config) {
			c.OnResponse = func(site *pipeline.Site, status int, d time.Duration) {
				tel.Metrics.Request(context.Background(), site.Integration, status, d)
			}
			c.OnRetry = func(site *pipeline.Site, reason string) {
				tel.Metrics.Retry(context.Background(), site.Integration, reason)
			}
		},
	})
	if err != nil {
		return err
	}
	if err := tel.Metrics.ObserveGauges(svc.Relay.Buffered, svc.Relay.Lag); err != nil {
		return err
	}
	log.Info("atrelay starting", "version", Version, "topic", cfg.Kafka.Topic, "group", cfg.Kafka.Group,
		"integrations", len(cfg.Integrations), "metrics", cfg.Telemetry.MetricsListen, "health", cfg.Telemetry.HealthListen)

	servers, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	g := new(errgroup.Group)
	g.Go(func() error { return telemetry.Serve(servers, cfg.Telemetry.MetricsListen, tel.Handler()) })
	g.Go(func() error { return telemetry.Serve(servers, cfg.Telemetry.HealthListen, health.Handler()) })
	runErr := svc.Run(ctx)
	stopServers()
	serveErr := g.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tel.Shutdown(sctx)
	log.Info("atrelay stopped")
	if runErr != nil {
		return runErr
	}
	return serveErr
}

// Offsets shows the group's committed offsets and lag, or resets them
// (a dry run unless execute).
func Offsets(ctx context.Context, cfg *config.Config, reset bool, to string, execute bool, w io.Writer) error {
	kopts, err := kafkaconn.Options(cfg.Kafka)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if !reset {
		rows, err := groupoffsets.Show(ctx, adm, cfg.Kafka.Group, cfg.Kafka.Topic)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "group %s, topic %s\n", cfg.Kafka.Group, cfg.Kafka.Topic)
		groupoffsets.Print(w, rows, false)
		return nil
	}
	rows, err := groupoffsets.Reset(ctx, adm, cfg.Kafka.Group, cfg.Kafka.Topic, to, execute)
	if err != nil {
		return err
	}
	groupoffsets.Print(w, rows, true)
	if execute {
		fmt.Fprintf(w, "committed: group %s restarts from the new offsets\n", cfg.Kafka.Group)
	} else {
		fmt.Fprintln(w, "dry run: nothing committed; add --execute to apply")
	}
	return nil
}

// Check prints, per integration, every event name and property key it will
// send — what the operator must declare in Piano's Data Model — and with
// connect, reaches the brokers, the registry and each collect domain.
func Check(ctx context.Context, cfg *config.Config, connect bool, w io.Writer) error {
	svc, err := Build(cfg, Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "configuration OK: topic %s, group %s, %d integration(s)\n\n", cfg.Kafka.Topic, cfg.Kafka.Group, len(cfg.Integrations))
	for _, d := range pipeline.Describe(svc.Integrations) {
		state := "enabled"
		if !d.Enabled {
			state = "DISABLED"
		}
		fmt.Fprintf(w, "integration %s (%s): site %d, %s, environments %s\n", d.Integration, state, d.SiteID, d.Endpoint, strings.Join(d.Environments, ", "))
		fmt.Fprintln(w, "  events (declare the Piano names in the Data Model):")
		for _, e := range slices.Sorted(maps.Keys(d.Events)) {
			fmt.Fprintf(w, "    %-32s -> %s\n", e, d.Events[e])
		}
		fmt.Fprintln(w, "  properties:")
		for _, k := range slices.Sorted(maps.Keys(d.Properties)) {
			fmt.Fprintf(w, "    %-32s %s\n", k, d.Properties[k])
		}
		fmt.Fprintln(w)
	}
	if !connect {
		return nil
	}
	var failed []string
	// Labels and errors may quote a URL with credentials (issue 9).
	report := func(what string, err error) {
		what = redact.String(what)
		if err != nil {
			failed = append(failed, what)
			fmt.Fprintf(w, "FAIL %s: %v\n", what, redact.Error(err))
			return
		}
		fmt.Fprintf(w, "ok   %s\n", what)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	kopts, err := kafkaconn.Options(cfg.Kafka)
	if err == nil {
		var cl *kgo.Client
		if cl, err = kgo.NewClient(kopts...); err == nil {
			adm := kadm.NewClient(cl)
			var topics kadm.TopicDetails
			if topics, err = adm.ListTopics(cctx, cfg.Kafka.Topic, cfg.Kafka.DLQTopic); err == nil {
				for _, t := range []string{cfg.Kafka.Topic, cfg.Kafka.DLQTopic} {
					if d, ok := topics[t]; !ok || d.Err != nil {
						err = fmt.Errorf("topic %s does not exist", t)
					}
				}
			}
			cl.Close()
		}
	}
	report("kafka brokers "+strings.Join(cfg.Kafka.Brokers, ","), err)
	if u := cfg.Codec.SchemaRegistry.URL; u != "" {
		cl, err := codec.RegistryClient(cfg.Codec.SchemaRegistry)
		if err == nil {
			_, err = cl.Subjects(cctx)
		}
		report("schema registry "+redact.URL(u), err)
	}
	for i := range cfg.Integrations {
		ep, _, _ := cfg.Integrations[i].Endpoint()
		u, _ := url.Parse(ep)
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
		var d net.Dialer
		conn, err := d.DialContext(cctx, "tcp", host)
		if err == nil {
			conn.Close()
		}
		report("collect domain "+host+" ("+cfg.Integrations[i].Name+")", err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("check --connect: %d failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}
