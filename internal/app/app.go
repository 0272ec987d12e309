// Package app assembles the service from a configuration: decoder, stages,
// sink and relay. `atrelay run`, the demo and the integration tests all build
// the service here, so they run the same code.
package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// Version is atrelay's version, sent in the User-Agent.
const Version = "0.1.0"

// UserAgent is the User-Agent of every collect request.
const UserAgent = "atrelay/" + Version

// Options are what the caller adds to the configuration.
type Options struct {
	Logger *slog.Logger
	// Metrics counts settlements; nil counts nothing.
	Metrics relay.Metrics
	// Stages are custom stages (deduplication, enrichers) run on every hit
	// after its route and mapping, before encoding; Middleware wraps each
	// of them (tracing, recovery).
	Stages     []pipeline.Stage
	Middleware []pipeline.Middleware
	// ClientOpts are added to the Kafka client's (hooks, tests).
	ClientOpts []kgo.Opt
	// SinkHooks adjusts the collect client's config (metrics hooks).
	SinkHooks func(*atinternet.Config)
	// OnReady is passed to the relay: true while the member owns at least
	// one partition.
	OnReady func(bool)
	// TracerProvider, when set, traces every record (receive and process
	// spans in the trace of its traceparent header, see relay.Tracer) and
	// every collect request (a span linked both ways to its records' spans,
	// with a client span per attempt, see atinternet.ScopeName).
	TracerProvider trace.TracerProvider
}

// Service is one assembled atrelay.
type Service struct {
	Relay        *relay.Relay
	Integrations *pipeline.Integrations
	kafka        kafkaconn.Config
}

// Build checks and assembles everything cfg describes; it connects nothing.
func Build(cfg *config.Config, o Options) (*Service, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dec, err := codec.FromConfig(cfg.Codec)
	if err != nil {
		return nil, err
	}
	ints, err := pipeline.Compile(cfg.Integrations)
	if err != nil {
		return nil, err
	}
	for i := range cfg.Integrations {
		if ep, plain, _ := cfg.Integrations[i].Endpoint(); plain {
			log.Warn("collect endpoint is plain HTTP; use it only for a local collector", "integration", cfg.Integrations[i].Name, "endpoint", ep)
		}
	}
	stages := pipeline.NewChain(ints, o.Stages, o.Middleware...)
	d := cfg.Delivery
	sc := atinternet.Config{
		Concurrency:    d.Relay.Concurrency,
		RequestTimeout: d.HTTP.RequestTimeout,
		Backoff:        d.Relay.Backoff,
		MaxRetries:     -1, // the partition waits; the event is never dropped
		UserAgent:      UserAgent,
		Logger:         log,
	}
	if sc.RootCAs, err = pipeline.CollectRoots(cfg.Integrations); err != nil {
		return nil, fielderr.Prefix("integrations", err)
	}
	if o.SinkHooks != nil {
		o.SinkHooks(&sc)
	}
	kopts, err := kafkaconn.Options(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	var tracer *relay.Tracer
	if o.TracerProvider != nil {
		// dlq.Propagator: a record's traceparent is read as produced, and
		// the DLQ copy keeps it; atrelay's own goes under atrelay.traceparent.
		tracer = relay.NewTracer(o.TracerProvider, relay.TracerOptions{Group: cfg.Kafka.Group,
			Propagator: dlq.Propagator(), RecordMessageKey: cfg.Telemetry.RecordMessageKey})
		kopts = append(kopts, kgo.WithHooks(tracer))
		sc.TracerProvider = o.TracerProvider
	}
	r, err := relay.New(relay.Config{
		Topic:       cfg.Kafka.Topic,
		Group:       cfg.Kafka.Group,
		DLQTopic:    cfg.Kafka.DLQTopic,
		ParkTopic:   cfg.Kafka.ParkTopic,
		StartLatest: cfg.Kafka.StartFrom == "latest",
		Delivery:    d.Relay,
		Batch:       d.Batch,
		ClientOpts:  append(kopts, o.ClientOpts...),
		Decoder:     dec,
		Stages:      stages,
		Encode:      atinternet.Encode,
		Sink:        atinternet.NewClient(sc),
		Metrics:     o.Metrics,
		Logger:      log,
		OnReady:     o.OnReady,
		Tracer:      tracer,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	return &Service{Relay: r, Integrations: ints, kafka: cfg.Kafka}, nil
}

// Run checks that the brokers accept the connection settings (see
// kafkaconn.Verify: a rejected certificate or password fails here, at
// start, instead of being retried for ever), then runs the relay until ctx
// ends and it has shut down.
func (s *Service) Run(ctx context.Context) error {
	if err := kafkaconn.Verify(ctx, s.kafka); err != nil {
		return err
	}
	return s.Relay.Run(ctx)
}
