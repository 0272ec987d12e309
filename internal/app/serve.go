package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/telemetry"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// Serve runs `atrelay run`: it binds the metrics and health listeners
// (an address in use fails the start, before the member joins the group),
// then runs the relay until ctx ends and the relay has shut down (stop
// fetching, flush, settle, commit, leave the group), then flushes
// telemetry. A listener that fails later shuts the relay down too.
func Serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	names := make([]string, len(cfg.Integrations))
	for i := range cfg.Integrations {
		names[i] = cfg.Integrations[i].Name
	}
	tel, err := telemetry.Setup(telemetry.Options{
		ServiceName: cfg.Telemetry.ServiceName, Version: Version, Logger: log,
		MaxBufferedEvents: cfg.Delivery.Relay.MaxBufferedEvents, Integrations: names,
	})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	health := &telemetry.Health{ReadyTimeout: cfg.Telemetry.ReadyTimeout}
	var tp trace.TracerProvider
	if tel.Tracing != nil {
		tp = tel.Tracing
	}
	svc, err := Build(cfg, Options{
		TracerProvider: tp,
		Logger:         log,
		Metrics:        tel.Metrics,
		OnReady:        health.SetReady,
		// Both Kafka clients (the consumer's and the DLQ writer's).
		ClientOpts: []kgo.Opt{kgo.WithHooks(tel.KafkaHooks()...)},
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
	health.LastContact = svc.Relay.LastContact
	health.Detail = func() []string { return siteLines(svc.Relay.Sites()) }
	gauges := []telemetry.Gauges{{Buffered: svc.Relay.Buffered, Lag: svc.Relay.Lag, Topic: cfg.Kafka.Topic, Group: cfg.Kafka.Group}}
	if p := svc.Relay.Parking(); p != nil {
		// The parking consumer's series carry its own topic and group.
		gauges = append(gauges, telemetry.Gauges{Buffered: p.Buffered, Lag: p.Lag, Topic: cfg.Kafka.ParkTopic, Group: cfg.Kafka.Group + relay.ParkGroupSuffix})
	}
	if err := tel.Metrics.ObserveGauges(gauges...); err != nil {
		return err
	}
	metrics, err := telemetry.Listen(cfg.Telemetry.MetricsListen, tel.Handler())
	if err != nil {
		return fmt.Errorf("telemetry.metrics_listen: %w", err)
	}
	probes, err := telemetry.Listen(cfg.Telemetry.HealthListen, health.Handler())
	if err != nil {
		metrics.Close()
		return fmt.Errorf("telemetry.health_listen: %w", err)
	}
	log.Info("atrelay starting", "version", Version, "topic", cfg.Kafka.Topic, "group", cfg.Kafka.Group,
		"integrations", len(cfg.Integrations), "metrics", metrics.Addr(), "health", probes.Addr(),
		"ready_timeout", cfg.Telemetry.ReadyTimeout.String())

	// The relay stops at ctx's end or when a listener fails; the listeners
	// stop once the relay has shut down, so that /readyz answers (503)
	// through the shutdown.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	servers, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	var g errgroup.Group
	for _, srv := range []*telemetry.Server{metrics, probes} {
		g.Go(func() error {
			err := srv.Serve(servers)
			if err != nil {
				log.Error("listener failed; shutting down", "error", err)
				stopRun()
			}
			return err
		})
	}
	runErr := svc.Run(runCtx)
	stopServers()
	serveErr := g.Wait()
	log.Info("atrelay stopped")
	return errors.Join(runErr, serveErr)
}

// siteLines are the readiness detail: one line per site paused or
// parking. A paused site does not make the member unready: restarting it
// would not fix the site, and its records wait (or are parked) meanwhile.
func siteLines(sites []relay.SiteState) []string {
	lines := make([]string, len(sites))
	for i, s := range sites {
		lines[i] = "isolated site: " + s.String()
	}
	return lines
}

// Check prints, per integration, every event name and property key it will
// send — what the operator must declare in Piano's Data Model — and with
// connect, reaches everything the service needs (see connect). It returns
// an error naming every check that failed.
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
	return checkConnect(ctx, cfg, w)
}
