package park_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/sinks/park"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return c
}

// open opens a writer to topic; its failed attempts go to errs, its
// lines to log.
func open(t *testing.T, k *testkafka.Cluster, topic string, errs chan error, log *syncBuffer) *park.Writer {
	t.Helper()
	w, err := park.Open(ctx(t), park.Config{
		Topic:        topic,
		ClientOpts:   []kgo.Opt{kgo.SeedBrokers(k.Brokers()...), kgo.MetadataMinAge(10 * time.Millisecond)},
		Logger:       slog.New(slog.NewTextHandler(log, nil)),
		OnWriteError: func(err error) { errs <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// TestParkedRecord: Open warns that the parking topic is missing; a write
// to it is retried until the topic is created, then done(nil); the parked
// copy keeps the original key, value and headers and adds the
// integration, the reason, the first failure, the attempts and the origin.
// Mutations caught: done(nil) after a failed attempt (the topic never
// holds the record); the original headers left out (origin=test missing);
// findTopic returning nil for a missing topic (no warning).
func TestParkedRecord(t *testing.T) {
	k := testkafka.New(t)
	topic := k.Name(t, "park")
	errs := make(chan error, 100)
	var log syncBuffer
	w := open(t, k, topic, errs, &log)
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "topic="+topic) {
		t.Errorf("Open did not warn that the parking topic is missing:\n%s", log.String())
	}
	first := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	rec := &kgo.Record{Topic: "events", Partition: 2, Offset: 41, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}}
	done := make(chan error, 1)
	w.Write(ctx(t), rec, park.Parking{Integration: "fitness", Reason: "no_answer", FirstFailure: first, Attempts: 3},
		func(err error) { done <- err })
	select {
	case <-errs:
	case err := <-done:
		t.Fatalf("done(%v) while the topic does not exist", err)
	case <-ctx(t).Done():
		t.Fatal("no failed attempt while the topic does not exist")
	}
	k.CreateTopic(t, topic, 1)
	if err := <-done; err != nil {
		t.Fatalf("done(%v) after the topic was created", err)
	}
	got := k.ReadAll(t, topic, 1)[0]
	h := headers(got)
	for key, want := range map[string]string{
		"origin": "test", park.HeaderIntegration: "fitness", park.HeaderReason: "no_answer",
		park.HeaderFirstFailure: "2026-11-01T08:00:00Z", park.HeaderAttempts: "3",
		park.HeaderTopic: "events", park.HeaderPartition: "2", park.HeaderOffset: "41",
	} {
		if h[key] != want {
			t.Errorf("header %s = %q, want %q", key, h[key], want)
		}
	}
	if string(got.Key) != "k" || string(got.Value) != "v" {
		t.Errorf("parked record %q=%q, want k=v", got.Key, got.Value)
	}
	if _, err := time.Parse(time.RFC3339Nano, h[park.HeaderTime]); err != nil {
		t.Errorf("time header %q: %v", h[park.HeaderTime], err)
	}
}

// TestWriteEnds: a write that cannot succeed ends with its context's
// cause, or ErrClosed when the writer is closed, never nil; a write after
// Close ends at once.
// Mutation caught: Close not ending the writes in flight (Close never
// returns).
func TestWriteEnds(t *testing.T) {
	k := testkafka.New(t)
	errs := make(chan error, 100)
	w := open(t, k, k.Name(t, "missing"), errs, new(syncBuffer))
	rec := &kgo.Record{Topic: "events", Value: []byte("v")}
	p := park.Parking{Integration: "fitness", Reason: "no_answer"}
	c, cancel := context.WithCancel(ctx(t))
	byCtx, byClose, after := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	w.Write(c, rec, p, func(err error) { byCtx <- err })
	w.Write(ctx(t), rec, p, func(err error) { byClose <- err })
	<-errs
	cancel()
	if err := <-byCtx; !errors.Is(err, context.Canceled) {
		t.Errorf("done(%v) after ctx ended, want context.Canceled", err)
	}
	w.Close()
	if err := <-byClose; !errors.Is(err, park.ErrClosed) {
		t.Errorf("done(%v) for a write Close ended, want ErrClosed", err)
	}
	w.Write(ctx(t), rec, p, func(err error) { after <- err })
	if err := <-after; !errors.Is(err, park.ErrClosed) {
		t.Errorf("done(%v) for a write after Close, want ErrClosed", err)
	}
}
