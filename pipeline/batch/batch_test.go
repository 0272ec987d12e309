package batch_test

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
)

// recorder collects flushed requests.
type recorder struct {
	mu      sync.Mutex
	flushes [][]pipeline.Request
}

func (r *recorder) flush(_ *pipeline.Site, reqs []pipeline.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes = append(r.flushes, reqs)
}

func (r *recorder) count() (flushes, hits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.flushes {
		for _, req := range f {
			hits += len(req.Hits)
		}
	}
	return len(r.flushes), hits
}

func hit(site *pipeline.Site, visitor string, i, size int) *pipeline.Hit {
	return &pipeline.Hit{Site: site, IDClient: visitor, Name: fmt.Sprint(i), Body: make([]byte, size)}
}

var siteA, siteB = &pipeline.Site{ID: 1}, &pipeline.Site{ID: 2}

func TestFlushTriggers(t *testing.T) {
	tests := []struct {
		name        string
		cfg         batch.Config
		hits        int
		size        int
		wantFlushes int
	}{
		{"max events", batch.Config{MaxEvents: 10, MaxBytes: 1 << 20, Linger: time.Hour}, 25, 10, 2},
		{"max bytes", batch.Config{MaxEvents: 1000, MaxBytes: 1000, Linger: time.Hour}, 25, 99, 2},
		{"oversized hit goes alone", batch.Config{MaxEvents: 1000, MaxBytes: 100, Linger: time.Hour}, 3, 500, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			b := batch.New(tt.cfg, rec.flush)
			for i := range tt.hits {
				b.Add(hit(siteA, "v", i, tt.size))
			}
			if f, _ := rec.count(); f != tt.wantFlushes {
				t.Fatalf("%d flushes before Close, want %d", f, tt.wantFlushes)
			}
			b.Close()
			if _, h := rec.count(); h != tt.hits {
				t.Fatalf("%d hits flushed after Close, want %d", h, tt.hits)
			}
			if b.Len() != 0 {
				t.Fatalf("Len() = %d after Close", b.Len())
			}
		})
	}
}

func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		b := batch.New(batch.Config{MaxEvents: 100, MaxBytes: 1 << 20, Linger: 200 * time.Millisecond}, rec.flush)
		b.Add(hit(siteA, "v", 0, 10))
		time.Sleep(199 * time.Millisecond) // fake time: synctest's clock
		synctest.Wait()
		if f, _ := rec.count(); f != 0 {
			t.Fatal("flushed before linger")
		}
		b.Add(hit(siteA, "v", 1, 10))
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if f, h := rec.count(); f != 1 || h != 2 {
			t.Fatalf("%d flushes with %d hits at linger, want 1 with 2", f, h)
		}
		b.Close()
	})
}

func TestSplit(t *testing.T) {
	var hits []*pipeline.Hit
	for i := range 120 {
		hits = append(hits, hit(siteA, "solo", i, 1))
	}
	reqs := batch.Split(siteA, hits)
	if len(reqs) != 3 || len(reqs[0].Hits) != 50 || len(reqs[1].Hits) != 50 || len(reqs[2].Hits) != 20 {
		t.Fatalf("120 hits of one visitor split as %d requests", len(reqs))
	}
	for i, h := range append(append(reqs[0].Hits, reqs[1].Hits...), reqs[2].Hits...) {
		if h.Name != fmt.Sprint(i) {
			t.Fatalf("hit %d out of order: %s", i, h.Name)
		}
	}

	// Interleaved visitors: one request each, each in order, in order of
	// first appearance.
	hits = nil
	for i := range 30 {
		hits = append(hits, hit(siteA, []string{"x", "y", "z"}[i%3], i, 1))
	}
	reqs = batch.Split(siteA, hits)
	if len(reqs) != 3 || reqs[0].IDClient != "x" || reqs[1].IDClient != "y" || reqs[2].IDClient != "z" {
		t.Fatalf("visitors split as %+v", reqs)
	}
	for _, r := range reqs {
		if len(r.Hits) != 10 {
			t.Fatalf("visitor %s has %d hits", r.IDClient, len(r.Hits))
		}
		for j := 1; j < len(r.Hits); j++ {
			var a, b int
			fmt.Sscan(r.Hits[j-1].Name, &a)
			fmt.Sscan(r.Hits[j].Name, &b)
			if a >= b {
				t.Fatalf("visitor %s out of order", r.IDClient)
			}
		}
	}
}

func TestSitesNeverMixed(t *testing.T) {
	rec := &recorder{}
	b := batch.New(batch.Config{MaxEvents: 7, MaxBytes: 1 << 20, Linger: time.Hour}, rec.flush)
	for i := range 50 {
		b.Add(hit([]*pipeline.Site{siteA, siteB}[i%2], "v", i, 1))
	}
	b.Close()
	for _, f := range rec.flushes {
		for _, r := range f {
			for _, h := range r.Hits {
				if h.Site != r.Site {
					t.Fatalf("a hit of site %d in a request to site %d", h.Site.ID, r.Site.ID)
				}
			}
		}
	}
	if _, h := rec.count(); h != 50 {
		t.Fatalf("%d hits flushed, want 50", h)
	}
}

func BenchmarkAdd(b *testing.B) {
	bt := batch.New(batch.Config{MaxEvents: 500, MaxBytes: 1 << 20, Linger: time.Hour}, func(*pipeline.Site, []pipeline.Request) {})
	h := hit(siteA, "v", 0, 600)
	b.ReportAllocs()
	for b.Loop() {
		bt.Add(h)
	}
	bt.Close()
}
