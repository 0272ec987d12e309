package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Hit is one collect request as the collector script sees it.
type Hit struct {
	Member   string // which atrelay process sent it (its endpoint)
	Site     int64
	IDClient string
	EventIDs []string
}

// Action is what the collector does with a request.
type Action struct {
	Status     int           // 0: 204, accepted
	RetryAfter string        // the Retry-After header of a failure
	Delay      time.Duration // before answering
	Hang       bool          // never answer (until the client gives up)
	Reset      bool          // read the request, then reset the connection
}

// Script decides each request's fate; nil accepts everything.
type Script func(Hit) Action

// Collector is a collect server (SPEC §2) whose answers a scenario
// scripts. It records an event as delivered in the ledger before it
// answers 2xx, so that a commit can never legitimately pass an event the
// collector has not acknowledged. Each atrelay process gets an endpoint of
// its own (Endpoint), so that every hit names its sender.
type Collector struct {
	led *Ledger

	mu       sync.Mutex
	script   Script
	servers  []*http.Server
	statuses map[string]int // answers by kind: 204, 503, hang, reset
	closed   chan struct{}
}

func newCollector(led *Ledger) *Collector {
	return &Collector{led: led, statuses: map[string]int{}, closed: make(chan struct{})}
}

// SetScript replaces the script.
func (c *Collector) SetScript(s Script) {
	c.mu.Lock()
	c.script = s
	c.mu.Unlock()
}

// Endpoint starts a listener for member and returns its origin.
func (c *Collector) Endpoint(member string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("collector: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serve(member, w, r) }),
		ReadHeaderTimeout: 10 * time.Second}
	c.mu.Lock()
	c.servers = append(c.servers, srv)
	c.mu.Unlock()
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// Answers returns how many requests got each kind of answer.
func (c *Collector) Answers() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.statuses))
	for k, v := range c.statuses {
		out[k] = v
	}
	return out
}

// Close releases hung requests and stops every listener.
func (c *Collector) Close() {
	c.mu.Lock()
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	servers := c.servers
	c.mu.Unlock()
	for _, s := range servers {
		s.Close()
	}
}

func (c *Collector) count(kind string) {
	c.mu.Lock()
	c.statuses[kind]++
	c.mu.Unlock()
}

// body is a hit body: {"events":[{"name":…,"data":{…}}]}.
type body struct {
	Events []struct {
		Name string `json:"name"`
		Data struct {
			EventID string `json:"event_id"`
		} `json:"data"`
	} `json:"events"`
}

func (c *Collector) serve(member string, w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		c.count("unreadable")
		return
	}
	var b body
	if err := json.Unmarshal(raw, &b); err != nil || r.Method != http.MethodPost {
		c.count("400 malformed")
		http.Error(w, "malformed hit", http.StatusBadRequest)
		return
	}
	site, _ := strconv.ParseInt(r.URL.Query().Get("s"), 10, 64)
	hit := Hit{Member: member, Site: site, IDClient: r.URL.Query().Get("idclient")}
	for _, e := range b.Events {
		hit.EventIDs = append(hit.EventIDs, e.Data.EventID)
	}
	c.mu.Lock()
	script := c.script
	c.mu.Unlock()
	var a Action
	if script != nil {
		a = script(hit)
	}
	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-r.Context().Done():
			c.count("client gone")
			return
		case <-c.closed:
			return
		}
	}
	switch {
	case a.Hang:
		c.count("hang")
		select {
		case <-r.Context().Done():
		case <-c.closed:
		}
		return
	case a.Reset:
		c.count("reset")
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetLinger(0) // close sends RST
				}
				conn.Close()
			}
		}
		return
	case a.Status == 0 || a.Status/100 == 2:
		// Recorded before the answer: the relay cannot settle, hence
		// commit, what this has not recorded.
		c.led.Delivered(member, hit.EventIDs)
		c.count("204")
		w.WriteHeader(http.StatusNoContent)
	default:
		c.count(strconv.Itoa(a.Status))
		if a.RetryAfter != "" {
			w.Header().Set("Retry-After", a.RetryAfter)
		}
		http.Error(w, http.StatusText(a.Status), a.Status)
	}
}
