package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/redact"
	"github.com/atrelay/atrelay/pipeline"
)

// connectTimeout bounds `check --connect` as a whole; the checks run
// concurrently.
const connectTimeout = 15 * time.Second

// probe is one line of `check --connect`: what was checked, and what was
// found (detail) or what failed (err). A skipped check is neither a success
// nor a failure; a warning (warn, with the detail) is a finding that does
// not stop the service (a missing parking topic).
type probe struct {
	what   string
	detail string
	err    error
	skip   bool
	warn   bool
}

// checkConnect reaches, concurrently, everything the service needs: the
// brokers (metadata, the topic, the DLQ topic and, with parking on, the
// parking topic, whose absence is a WARN line as at the service's start;
// the consumer group), the
// schema registry (an authenticated request) and each enabled
// integration's collect endpoint (a TLS handshake and an HTTP OPTIONS
// request: any answer proves it reachable, and no hit is sent). It prints
// one line per check, in a fixed order, and returns an error naming every
// check that failed.
func checkConnect(ctx context.Context, cfg *config.Config, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	checks := []func(context.Context) []probe{
		func(ctx context.Context) []probe { return checkKafka(ctx, cfg.Kafka, cfg.Delivery.Relay.Parks()) },
	}
	if cfg.Codec.SchemaRegistry.URL != "" {
		checks = append(checks, func(ctx context.Context) []probe { return []probe{checkRegistry(ctx, cfg.Codec.SchemaRegistry)} })
	}
	client := probeClient(cfg.Delivery.HTTP.RequestTimeout)
	defer client.CloseIdleConnections()
	for i := range cfg.Integrations {
		in := &cfg.Integrations[i]
		c := client
		if roots, err := pipeline.CollectRoots([]pipeline.Integration{*in}); err == nil && len(roots) > 0 {
			// The probe trusts what the collect client trusts: the
			// integration's tls.ca_file, for its host.
			c = probeClient(cfg.Delivery.HTTP.RequestTimeout)
			defer c.CloseIdleConnections()
			for _, pool := range roots {
				c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
			}
		}
		checks = append(checks, func(ctx context.Context) []probe { return []probe{checkCollect(ctx, c, in)} })
	}
	results := make([][]probe, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() { results[i] = check(ctx) })
	}
	wg.Wait()

	var failed []string
	for _, ps := range results {
		for _, p := range ps {
			// Labels and errors may quote a URL with credentials (issue 9).
			what := redact.String(p.what)
			switch {
			case p.err != nil:
				failed = append(failed, what)
				fmt.Fprintf(w, "FAIL %s: %v\n", what, redact.Error(p.err))
			case p.skip:
				fmt.Fprintf(w, "skip %s: %s\n", what, p.detail)
			case p.warn:
				fmt.Fprintf(w, "WARN %s: %s\n", what, p.detail)
			default:
				fmt.Fprintf(w, "ok   %s: %s\n", what, p.detail)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("check --connect: %d failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// checkKafka asks the brokers for their metadata, the topics' (the
// parking topic's only when parks) and the group's description, with the
// service's own connection settings.
func checkKafka(ctx context.Context, k kafkaconn.Config, parks bool) []probe {
	brokers := probe{what: "kafka brokers " + strings.Join(k.Brokers, ",")}
	topic := probe{what: "topic " + k.Topic}
	dlqTopic := probe{what: "dlq topic " + k.DLQTopic}
	parkTopic := probe{what: "park topic " + k.ParkTopic}
	group := probe{what: "consumer group " + k.Group}
	probes := func() []probe {
		if parks {
			return []probe{brokers, topic, dlqTopic, parkTopic, group}
		}
		return []probe{brokers, topic, dlqTopic, group}
	}
	unreachable := func(err error) []probe {
		brokers.err = err
		for _, p := range []*probe{&topic, &dlqTopic, &parkTopic, &group} {
			p.skip, p.detail = true, "not checked: the brokers did not answer"
		}
		return probes()
	}
	opts, err := kafkaconn.Options(k)
	if err != nil {
		return unreachable(err)
	}
	var last lastFailure
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(&last))...)
	if err != nil {
		return unreachable(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		// Explain names a failure no retry fixes (certificate, password).
		return unreachable(kafkaconn.Explain(last.explain(err)))
	}
	brokers.detail = fmt.Sprintf("%d broker(s) answered, cluster %s", len(md.Brokers), md.Cluster)

	type topicProbe struct {
		p    *probe
		name string
	}
	topics := []topicProbe{{&topic, k.Topic}, {&dlqTopic, k.DLQTopic}}
	if parks {
		topics = append(topics, topicProbe{&parkTopic, k.ParkTopic})
	}
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.name
	}
	details, err := adm.ListTopics(ctx, names...)
	for _, t := range topics {
		d, ok := details[t.name]
		switch {
		case err != nil:
			t.p.err = last.explain(err)
		case t.p == &parkTopic && (!ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition)):
			// As at the service's start (sinks/park): the service runs,
			// but a site failing for park_after cannot be parked.
			t.p.warn, t.p.detail = true, "does not exist: a site failing for longer than delivery.park_after cannot be parked until it does (create it, or set delivery.park_after: 0s)"
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			t.p.err = errors.New("does not exist (atrelay does not create topics)")
		case d.Err != nil:
			t.p.err = d.Err
		default:
			t.p.detail = fmt.Sprintf("%d partition(s)", len(d.Partitions))
		}
	}

	d, ok, err := describeGroup(ctx, adm, k.Group)
	switch {
	case err != nil && !ok:
		group.err = last.explain(err)
	case !ok:
		group.err = errors.New("the coordinator did not describe it")
	case errors.Is(d.Err, kerr.GroupIDNotFound) || (d.Err == nil && d.State == "Dead"):
		group.detail = "described: no member and no committed offset yet (the first start creates it)"
	case d.Err != nil:
		group.err = d.Err
	default:
		group.detail = fmt.Sprintf("described: %s, %d member(s)", d.State, len(d.Members))
	}
	return probes()
}

// describeGroup describes group, again while its coordinator answers a
// retriable error (a new cluster creates its offsets topic at the first
// request: COORDINATOR_NOT_AVAILABLE meanwhile), until ctx ends.
func describeGroup(ctx context.Context, adm *kadm.Client, group string) (kadm.DescribedGroup, bool, error) {
	for {
		described, err := adm.DescribeGroups(ctx, group)
		d, ok := described[group]
		failure := err
		if ok {
			failure = d.Err
		}
		if failure == nil || !kerr.IsRetriable(failure) || !backoff.Sleep(ctx, 250*time.Millisecond) {
			return d, ok, err
		}
	}
}

// lastFailure remembers the Kafka client's last failed connection or
// request, to say why a request ran out of time.
type lastFailure struct {
	mu  sync.Mutex
	err error
}

var (
	_ kgo.HookBrokerConnect = new(lastFailure)
	_ kgo.HookBrokerE2E     = new(lastFailure)
)

func (l *lastFailure) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		l.set(fmt.Errorf("broker %s: %w", net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port)), err))
	}
}

func (l *lastFailure) OnBrokerE2E(meta kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	if err := e2e.Err(); err != nil {
		l.set(fmt.Errorf("broker %s: %w", net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port)), err))
	}
}

func (l *lastFailure) set(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

// explain adds the last connection failure to err when err says only that
// time ran out.
func (l *lastFailure) explain(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (last failure: %w)", err, l.err)
	}
	return err
}

// checkRegistry lists the registry's subjects, with its credentials.
func checkRegistry(ctx context.Context, c codec.SchemaRegistry) probe {
	p := probe{what: "schema registry " + redact.URL(c.URL)}
	cl, err := codec.RegistryClient(c)
	if err != nil {
		p.err = err
		return p
	}
	subjects, err := cl.Subjects(ctx)
	if err != nil {
		p.err = err
		return p
	}
	p.detail = fmt.Sprintf("answered an authenticated request (%d subject(s))", len(subjects))
	return p
}

// probeClient makes the requests to the collect endpoints: the standard
// transport (proxy from the environment, HTTP/2, the system's roots), like
// the collect client's, and redirects are answers, not followed.
func probeClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// checkCollect sends OPTIONS to an integration's collect endpoint: the TLS
// handshake verifies its certificate, and any HTTP answer proves it
// reachable. OPTIONS carries no hit.
func checkCollect(ctx context.Context, client *http.Client, in *pipeline.Integration) probe {
	ep, plain, err := in.Endpoint()
	p := probe{what: fmt.Sprintf("collect endpoint %s (%s)", ep, in.Name)}
	if err != nil {
		p.err = err
		return p
	}
	if !in.IsEnabled() {
		p.skip, p.detail = true, "integration disabled"
		return p
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, ep, nil)
	if err != nil {
		p.err = err
		return p
	}
	req.Header.Set("User-Agent", UserAgent)
	resp, err := client.Do(req)
	if err != nil {
		// The label names the URL already.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			err = fmt.Errorf("TLS certificate rejected: %w", err)
		}
		p.err = err
		return p
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	transport := "plain HTTP"
	if !plain {
		transport = "TLS verified"
	}
	p.detail = fmt.Sprintf("reachable, %s, HTTP %d to OPTIONS (no hit sent)", transport, resp.StatusCode)
	return p
}
