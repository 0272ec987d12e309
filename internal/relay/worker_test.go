package relay

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetched returns a record shaped as kgo returns a fetched one: its key,
// value and header values slices of one batch buffer, and a signal that
// fires once that buffer is garbage.
func fetched(t *testing.T, key, value []byte, headers ...kgo.RecordHeader) (*kgo.Record, <-chan struct{}) {
	t.Helper()
	batch := make([]byte, 0, 1<<20)
	slice := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(batch)
		batch = append(batch, b...)
		return batch[start:len(batch)]
	}
	rec := &kgo.Record{Topic: "events", Partition: 3, Offset: 1200, LeaderEpoch: 7,
		Timestamp: time.UnixMilli(1700000000000), Key: slice(key), Value: slice(value)}
	for _, h := range headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: slice(h.Value)})
	}
	freed := make(chan struct{})
	runtime.AddCleanup(&batch[:1][0], func(ch chan struct{}) { close(ch) }, freed)
	return rec, freed
}

// TestItemHoldCopies checks that an item's record equals the fetched one
// (metadata, key, value, headers; nil stays nil) and shares no memory with
// it: scribbling over the batch, or appending to the copy's key, leaves the
// copy's value as fetched.
// Mutation caught: hold keeping rec's value (`it.own.Value = rec.Value`):
// the scribbled batch shows through the copy.
// Mutation caught: appendCopy returning buf[start:] uncapped: appending to
// the key overwrites the value.
func TestItemHoldCopies(t *testing.T) {
	tp := kgo.RecordHeader{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}
	for _, tc := range []struct {
		name       string
		key, value []byte
		headers    []kgo.RecordHeader
	}{
		{"key, value and headers", []byte("visitor-1"), []byte("avro payload"), []kgo.RecordHeader{tp, {Key: "empty", Value: nil}}},
		{"no key", nil, []byte("avro payload"), nil},
		{"tombstone", []byte("visitor-1"), nil, nil},
		{"empty value", []byte{}, []byte{}, []kgo.RecordHeader{tp}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _ := fetched(t, tc.key, tc.value, tc.headers...)
			var it item
			// A reused item: its previous record was larger, and had headers.
			it.hold(&kgo.Record{Value: bytes.Repeat([]byte("x"), 100), Headers: []kgo.RecordHeader{tp, tp, tp}})
			it.drop()
			it.hold(rec)

			want := *rec
			want.Key, want.Value = bytes.Clone(rec.Key), bytes.Clone(rec.Value)
			want.Headers = nil
			for _, h := range rec.Headers {
				want.Headers = append(want.Headers, kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
			}
			for _, b := range [][]byte{rec.Key, rec.Value} {
				for i := range b {
					b[i] = '!'
				}
			}
			for _, h := range rec.Headers {
				for i := range h.Value {
					h.Value[i] = '!'
				}
			}
			got := it.rec
			if got.Topic != want.Topic || got.Partition != want.Partition || got.Offset != want.Offset ||
				got.LeaderEpoch != want.LeaderEpoch || !got.Timestamp.Equal(want.Timestamp) {
				t.Errorf("metadata: got %s/%d@%d epoch %d at %v, want %s/%d@%d epoch %d at %v", got.Topic, got.Partition, got.Offset,
					got.LeaderEpoch, got.Timestamp, want.Topic, want.Partition, want.Offset, want.LeaderEpoch, want.Timestamp)
			}
			same := func(what string, got, want []byte) {
				t.Helper()
				if (got == nil) != (want == nil) || !bytes.Equal(got, want) {
					t.Errorf("%s: got %q (nil %t), want %q (nil %t)", what, got, got == nil, want, want == nil)
				}
			}
			same("key", got.Key, want.Key)
			same("value", got.Value, want.Value)
			if len(got.Headers) != len(want.Headers) {
				t.Fatalf("headers: got %d, want %d", len(got.Headers), len(want.Headers))
			}
			for i := range want.Headers {
				if got.Headers[i].Key != want.Headers[i].Key {
					t.Errorf("header %d key: got %q, want %q", i, got.Headers[i].Key, want.Headers[i].Key)
				}
				same("header "+want.Headers[i].Key, got.Headers[i].Value, want.Headers[i].Value)
			}
			_ = append(got.Key, "overflow"...)
			same("value after appending to the key", got.Value, want.Value)
		})
	}
}

// TestItemHoldReleasesBatch checks the point of hold: a buffered item does
// not keep its record's batch alive, so the batch is freed while the item
// still holds the record.
// Mutation caught: hold keeping rec's value (`it.own.Value = rec.Value`):
// the batch is never freed and the test times out waiting for it.
func TestItemHoldReleasesBatch(t *testing.T) {
	rec, freed := fetched(t, []byte("visitor-1"), []byte("avro payload"), kgo.RecordHeader{Key: "traceparent", Value: []byte("00-01")})
	var it item
	it.hold(rec) // rec is dead past this line, as after a poll
	// A bounded wait for the collector (cleanups run after a cycle, on
	// their own goroutine), not a timing threshold.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		runtime.GC()
		select {
		case <-freed:
			if string(it.rec.Value) != "avro payload" {
				t.Fatalf("value: got %q", it.rec.Value)
			}
			runtime.KeepAlive(&it)
			return
		case <-ctx.Done():
			t.Fatal("the batch is still alive: the item keeps it")
		case <-tick.C:
		}
	}
}
