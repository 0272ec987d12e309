package atinternet_test

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden sends 60 fixture events over 3 integrations through stages,
// batcher and sink to a collector, and compares every request (URL and body)
// with testdata/golden.txt. Run with -update to rewrite it.
func TestGolden(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI()+"\n"+string(b)+"\n")
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	cfgs := fixture.Integrations(srv.URL)
	cfgs[2].Enabled = new(true) // all three sites receive hits here
	in, err := pipeline.Compile(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	chain := pipeline.NewChain(in, nil)
	client := atinternet.NewClient(atinternet.Config{UserAgent: "atrelay/test", MaxRetries: 0})
	var reqs []pipeline.Request
	b := batch.New(batch.Config{MaxEvents: 1000, MaxBytes: 1 << 20, Linger: time.Hour}, func(_ *pipeline.Site, r []pipeline.Request) { reqs = append(reqs, r...) })
	events := fixture.Generate(fixture.Options{Seed: 7, Events: 60, EventsPerVisitor: 3, Apps: []string{fixture.AppFitness, fixture.AppNews, fixture.AppGames}, SandboxShare: -1, NoIDClientShare: -1})
	for i := range events {
		h := &pipeline.Hit{Event: &events[i]}
		if _, err := chain.Process(context.Background(), h); err == nil {
			atinternet.Encode(h)
			b.Add(h)
		}
	}
	b.Close()
	for _, r := range reqs { // sequentially, so the golden file has a stable order
		if s := client.Send(context.Background(), r); s.Outcome != pipeline.Delivered {
			t.Fatalf("request not delivered: %s %s: %v", s.Outcome, s.Reason, s.Err)
		}
	}
	slices.Sort(got) // Flush visits sites in map order
	text := strings.Join(got, "\n")
	const golden = "testdata/golden.txt"
	if *update {
		if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if text != string(want) {
		t.Fatalf("requests differ from %s (run with -update after checking):\n%s", golden, text)
	}
	sites := map[string]bool{}
	for _, g := range got {
		sites[strings.SplitN(g, "&", 2)[0]] = true
	}
	if len(got) < 10 || len(sites) != 3 {
		t.Fatalf("golden covers %d requests to %d sites", len(got), len(sites))
	}
}
