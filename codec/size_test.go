package codec_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/fixture"
)

// TestMaxRecordBytes: a value longer than the decoder's limit fails with a
// *PermanentError of reason too_large (ErrTooLarge) before anything reads
// it — the registry is not asked for its schema, the event is left as it
// was — while a value of exactly the limit decodes; the limit is
// DefaultMaxRecordBytes unless set, and FromConfig takes
// codec.max_record_bytes.
//
// Mutations caught (each applied once, seen failing, reverted): the check
// written `>=` fails "exactly the limit"; the check moved after d.writer
// (the framing and the schema looked up first) fails "above the limit,
// registry failing" (a transient error, and a registry request);
// FromConfig not passing MaxRecordBytes fails "from config".
func TestMaxRecordBytes(t *testing.T) {
	ev := events(1)[0]
	enc := fixture.MustEncoder("")
	confluent := enc.Confluent(schemaID, &ev)
	_, good := registry(t)
	// A registry that counts its requests and fails every one: a decode
	// that asks it gets a transient error.
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, `{"error_code":50001,"message":"boom"}`, http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	failing, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	fromConfig := func(n int) func() (*codec.Decoder, error) {
		return func() (*codec.Decoder, error) {
			cfg := codec.Config{Framing: "raw", MaxRecordBytes: &n}
			cfg.Default()
			return codec.FromConfig(cfg)
		}
	}
	fromNew := func(reg *sr.Client, opts ...codec.Option) func() (*codec.Decoder, error) {
		return func() (*codec.Decoder, error) { return codec.New(codec.FramingAuto, reg, "", opts...) }
	}
	tests := []struct {
		name     string
		decoder  func() (*codec.Decoder, error)
		value    []byte
		tooLarge bool
	}{
		{"exactly the limit", fromNew(good, codec.MaxRecordBytes(len(confluent))), confluent, false},
		{"one byte above the limit", fromNew(good, codec.MaxRecordBytes(len(confluent)-1)), confluent, true},
		{"above the limit, registry failing", fromNew(failing, codec.MaxRecordBytes(len(confluent)-1)), confluent, true},
		{"default limit, 2 MiB", fromNew(failing), append(confluent, make([]byte, 2<<20)...), true},
		{"default limit, 2 MiB raw", fromNew(nil), make([]byte, 2<<20), true},
		{"from config", fromConfig(10), enc.Raw(&ev), true},
		{"from config, default", fromConfig(codec.DefaultMaxRecordBytes), enc.Raw(&ev), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked.Store(0)
			d, err := tt.decoder()
			if err != nil {
				t.Fatal(err)
			}
			got := codec.Event{EventID: "untouched"}
			err = d.DecodeInto(context.Background(), tt.value, &got)
			if !tt.tooLarge {
				if err != nil || got.EventID != ev.EventID {
					t.Fatalf("err = %v, event id %q; want %q decoded", err, got.EventID, ev.EventID)
				}
				return
			}
			pe, ok := errors.AsType[*codec.PermanentError](err)
			if !ok || !errors.Is(err, codec.ErrTooLarge) || pe.Reason() != "too_large" {
				t.Fatalf("err = %v (%T), want a permanent too_large error", err, err)
			}
			if _, ok := errors.AsType[*codec.TransientError](err); ok {
				t.Fatalf("err = %v is also transient", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "codec.max_record_bytes") {
				t.Errorf("error %q does not name codec.max_record_bytes", msg)
			}
			if got.EventID != "untouched" {
				t.Errorf("event id %q: the event was written", got.EventID)
			}
			if n := asked.Load(); n != 0 {
				t.Errorf("the registry was asked %d times for a record refused unread", n)
			}
		})
	}
}

// TestMaxRecordBytesConfig: an unset max_record_bytes is 1 MiB; 0 and a
// negative size are each an error naming the key, and New refuses them too.
// Mutation caught: Validate testing `< 0` lets 0 through ("zero").
func TestMaxRecordBytesConfig(t *testing.T) {
	var unset codec.Config
	unset.Default()
	if unset.MaxRecordBytes == nil || *unset.MaxRecordBytes != 1<<20 {
		t.Fatalf("default max_record_bytes = %v, want 1048576", unset.MaxRecordBytes)
	}
	if err := unset.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	for _, tt := range []struct {
		name string
		n    int
	}{{"zero", 0}, {"negative", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := codec.Config{MaxRecordBytes: &tt.n}
			cfg.Default()
			errs := fielderr.Flatten(cfg.Validate())
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "max_record_bytes: must be a positive number of bytes") {
				t.Fatalf("Validate() = %v, want one max_record_bytes error", errs)
			}
			if _, err := codec.New(codec.FramingRaw, nil, "", codec.MaxRecordBytes(tt.n)); err == nil {
				t.Fatal("New accepted the size")
			}
		})
	}
}
