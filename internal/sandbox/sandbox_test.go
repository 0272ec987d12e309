package sandbox_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/atrelay/atrelay/internal/sandbox"
)

const good = `{"events":[{"name":"subscription_started","data":{"event_id":"e1","event_date":"2026-11-01T08:00:00.000Z","plan_price":4.99,"is_family_shared":false,"purchase_date":1761984000}}]}`

func post(t *testing.T, url, method, query, ctype, ua, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url+query, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("User-Agent", ua)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func event(data string) string {
	return `{"events":[{"name":"trial_started","data":{"event_date":"2026-11-01T08:00:00Z",` + data + `}}]}`
}

func TestRules(t *testing.T) {
	c := sandbox.New()
	srv := httptest.NewServer(c)
	defer srv.Close()
	const q, ct, ua = "/event?s=123&idclient=abc", "text/plain;charset=UTF-8", "atrelay/test"
	many := `{"events":[` + strings.Repeat(`{"name":"a","data":{"event_date":"2026-11-01T08:00:00Z"}},`, 50) + `{"name":"a","data":{"event_date":"2026-11-01T08:00:00Z"}}]}`
	tests := []struct {
		name, method, query, ctype, ua, body, rule string
	}{
		{"method", "GET", q, ct, ua, good, "method must be POST"},
		{"no path", "POST", "/?s=1&idclient=a", ct, ua, good, "path: the collect path must not be empty"},
		{"no s", "POST", "/event?idclient=a", ct, ua, good, "query: exactly one s"},
		{"s not a number", "POST", "/event?s=abc&idclient=a", ct, ua, good, "query: s must be a positive integer"},
		{"two s", "POST", "/event?s=1&s=2&idclient=a", ct, ua, good, "query: exactly one s"},
		{"no idclient", "POST", "/event?s=1", ct, ua, good, "query: exactly one non-empty idclient"},
		{"content type", "POST", q, "application/json", ua, good, "header: Content-Type must be text/plain;charset=UTF-8"},
		{"user agent", "POST", q, ct, "curl/8", good, "header: User-Agent must name atrelay"},
		{"bad json", "POST", q, ct, ua, `{"events":[`, "body: not a JSON object"},
		{"no events key", "POST", q, ct, ua, `{"hits":[]}`, `body: must be exactly {"events":[...]}`},
		{"no events", "POST", q, ct, ua, `{"events":[]}`, "body: a request carries 1 to 50 events, not 0"},
		{"51 events", "POST", q, ct, ua, many, "body: a request carries 1 to 50 events, not 51"},
		{"bad event name", "POST", q, ct, ua, `{"events":[{"name":"Trial-Started","data":{"event_date":"2026-11-01T08:00:00Z"}}]}`, `events[0].name: "Trial-Started"`},
		{"uppercase key", "POST", q, ct, ua, event(`"Plan":"x"`), "events[0].data.Plan: key must match"},
		{"key too long", "POST", q, ct, ua, event(`"` + strings.Repeat("k", 41) + `":"x"`), "key must be at most 40 characters"},
		{"m_ key", "POST", q, ct, ua, event(`"m_plan":"x"`), "events[0].data.m_plan: key must not start with m_ or visit_"},
		{"visit_ key", "POST", q, ct, ua, event(`"visit_x":"x"`), "events[0].data.visit_x: key must not start with m_ or visit_"},
		{"long string", "POST", q, ct, ua, event(`"plan":"` + strings.Repeat("é", 256) + `"`), "events[0].data.plan: string longer than 255 characters"},
		{"int out of range", "POST", q, ct, ua, event(`"n":99999999999999999999`), "events[0].data.n: integer out of int64 range"},
		{"decimal out of range", "POST", q, ct, ua, event(`"price":2e15`), "events[0].data.price: decimal must be within ±1e15"},
		{"null value", "POST", q, ct, ua, event(`"plan":null`), "events[0].data.plan: value must be a string, number or boolean"},
		{"array value", "POST", q, ct, ua, event(`"plans":["a"]`), "events[0].data.plans: value must be a string, number or boolean"},
		{"date in milliseconds", "POST", q, ct, ua, event(`"purchase_date":1761984000000`), "events[0].data.purchase_date: date property must be epoch seconds, not milliseconds"},
		{"date not a date", "POST", q, ct, ua, event(`"renewal_ts":"tomorrow"`), "events[0].data.renewal_ts: date property must be RFC 3339 or epoch seconds"},
		{"no event_date", "POST", q, ct, ua, `{"events":[{"name":"a","data":{"plan":"x"}}]}`, "events[0].data.event_date: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.Stats()
			status, body := post(t, srv.URL, tt.method, tt.query, tt.ctype, tt.ua, tt.body)
			if status != http.StatusBadRequest || !strings.Contains(body, tt.rule) {
				t.Fatalf("got %d %q, want 400 with %q", status, body, tt.rule)
			}
			after := c.Stats()
			if after.Rejections != before.Rejections+1 || after.Hits != before.Hits {
				t.Fatalf("stats %+v -> %+v: want one more rejection and no hit", before, after)
			}
			rj := c.Rejections()
			if !strings.Contains(rj[len(rj)-1].Rule, tt.rule) {
				t.Fatalf("recorded rule %q", rj[len(rj)-1].Rule)
			}
		})
	}
}

func TestAcceptsAndRecords(t *testing.T) {
	c := sandbox.New()
	srv := httptest.NewServer(c)
	defer srv.Close()
	status, body := post(t, srv.URL, "POST", "/subscription?s=42&idclient=v%201", "text/plain; charset=utf-8", "atrelay/0.1.0", good)
	if status != http.StatusNoContent || body != "" {
		t.Fatalf("got %d %q, want 204 and an empty body", status, body)
	}
	hits := c.Hits()
	if len(hits) != 1 || hits[0].Site != 42 || hits[0].IDClient != "v 1" || hits[0].Path != "subscription" || hits[0].Name != "subscription_started" || hits[0].Data["event_id"] != "e1" {
		t.Fatalf("recorded %+v", hits)
	}
	if got := c.Stats().PerSite[42]["subscription_started"]; got != 1 {
		t.Fatalf("per-site count %d", got)
	}
}

func TestFaultsAndWaiting(t *testing.T) {
	c := sandbox.New()
	srv := httptest.NewServer(c)
	defer srv.Close()
	c.FailNext(2, 503, "7")
	for range 2 {
		req, _ := http.NewRequest("POST", srv.URL+"/e?s=1&idclient=a", strings.NewReader(good))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" {
			t.Fatalf("got %d Retry-After %q, want 503 and 7", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	release := c.Hold()
	got := make(chan int, 1)
	go func() {
		status, _ := post(t, srv.URL, "POST", "/e?s=1&idclient=a", "text/plain;charset=UTF-8", "atrelay/x", good)
		got <- status
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitHits(ctx, 1); err == nil {
		t.Fatal("a held request was recorded before release")
	}
	release()
	if err := c.WaitHits(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != 204 {
		t.Fatalf("released request got %d", s)
	}
}
