package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// SendTest sends one test hit for an integration through the same stages and
// client as the service, and prints the request and the collector's answer:
// how an operator checks that events arrive in Piano before going live. The
// event is the integration's first enabled event, for its first environment,
// with a visitor id and event id that say "atrelay-send-test".
func SendTest(ctx context.Context, cfg *config.Config, name string, w io.Writer) error {
	var in *pipeline.Integration
	for i := range cfg.Integrations {
		if cfg.Integrations[i].Name == name {
			in = &cfg.Integrations[i]
		}
	}
	if in == nil {
		return fmt.Errorf("send-test: no integration named %q", name)
	}
	if !in.IsEnabled() {
		return fmt.Errorf("send-test: integration %q is disabled", name)
	}
	ints, err := pipeline.Compile([]pipeline.Integration{*in})
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := fmt.Sprintf("atrelay-send-test-%d", now.UnixMilli())
	ev := codec.Event{
		EventID: id, EventName: in.Events[0], EventCreatedAt: now, APIVersion: 3,
		AppID: in.AppID, Environment: in.Environments[0],
		UserID: "atrelay-send-test", AnonymousUserID: "atrelay-send-test",
		UserAttributes: map[string]string{"at_internet_id_client": "atrelay-send-test"},
		Store:          "APPLE_APP_STORE", Product: "atrelay-send-test", Plan: "atrelay-send-test", OfferType: "NONE",
	}
	// Every attribute idclient_from may name holds the test visitor id.
	for _, src := range in.IDClientFrom {
		if a, ok := strings.CutPrefix(src, "attribute:"); ok && a != "" {
			ev.UserAttributes[a] = "atrelay-send-test"
		}
	}
	h := &pipeline.Hit{Event: &ev}
	if _, err := pipeline.NewChain(ints, nil).Process(ctx, h); err != nil {
		return fmt.Errorf("send-test: the test event did not pass the stages: %w", err)
	}
	atinternet.Encode(h)
	req := pipeline.Request{Site: h.Site, IDClient: h.IDClient, Hits: []*pipeline.Hit{h}}
	fmt.Fprintf(w, "POST %s\n%s\n", atinternet.URL(req.Site, req.IDClient), atinternet.Body(req.Hits))
	d := cfg.Delivery
	roots, err := pipeline.CollectRoots([]pipeline.Integration{*in})
	if err != nil {
		return fmt.Errorf("send-test: %w", err)
	}
	client := atinternet.NewClient(atinternet.Config{
		Concurrency: 1, RequestTimeout: d.HTTP.RequestTimeout, Backoff: d.Relay.Backoff,
		MaxRetries: 2, UserAgent: UserAgent, RootCAs: roots,
	})
	s := client.Send(ctx, req)
	switch s.Outcome {
	case pipeline.Delivered:
		fmt.Fprintf(w, "delivered (2xx). Look for event %q, visitor atrelay-send-test, on site %d.\n", h.Name, in.SiteID)
		return nil
	case pipeline.Rejected:
		return fmt.Errorf("send-test: the collect server refused the hit (%s): %w", s.Reason, s.Err)
	default:
		return fmt.Errorf("send-test: no answer from the collect server (%s): %w", s.Reason, s.Err)
	}
}
