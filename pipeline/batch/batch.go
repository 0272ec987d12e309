// Package batch groups hits per Piano site and, at flush, splits a site's
// batch into requests: one per visitor, at most 50 events each, every
// visitor's events in the order they were added.
package batch

import (
	"errors"
	"sync"
	"time"

	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/piano"
	"github.com/atrelay/atrelay/pipeline"
)

// Config bounds a site's batch: it is flushed when it holds MaxEvents hits,
// when the next hit would take it past MaxBytes of encoded hits, and Linger
// after its first hit. Its keys are part of the configuration's `delivery`
// section.
type Config struct {
	MaxEvents int           `yaml:"max_events"`
	MaxBytes  int           `yaml:"max_bytes"`
	Linger    time.Duration `yaml:"linger"`
}

// The defaults (SPEC §5).
const (
	DefaultMaxEvents = 500
	DefaultMaxBytes  = 1 << 20
	DefaultLinger    = 200 * time.Millisecond
	// MinMaxBytes keeps room for at least one ordinary hit per batch.
	MinMaxBytes = 1024
)

// Default fills the unset bounds.
func (c *Config) Default() {
	if c.MaxEvents == 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
}

// Validate checks the bounds; key paths are relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxEvents <= 0 {
		errs = append(errs, fielderr.New("max_events", "must be positive"))
	}
	if c.MaxBytes < MinMaxBytes {
		errs = append(errs, fielderr.New("max_bytes", "must be at least %d", MinMaxBytes))
	}
	if c.Linger <= 0 {
		errs = append(errs, fielderr.New("linger", "must be positive"))
	}
	return errors.Join(errs...)
}

// FlushFunc receives a site's requests. It runs on the goroutine that caused
// the flush (Add for size, a timer for linger, Flush or Close) and must not
// block for long: hand the requests to another goroutine to send them.
type FlushFunc func(site *pipeline.Site, reqs []pipeline.Request)

// Batcher holds one batch per site. It is safe for concurrent use.
type Batcher struct {
	cfg   Config
	flush FlushFunc

	mu     sync.Mutex
	sites  map[*pipeline.Site]*siteBatch
	closed bool
}

type siteBatch struct {
	hits  []*pipeline.Hit
	bytes int
	timer *time.Timer
	gen   uint64 // bumped at each flush, so a stale linger timer does nothing
}

// New returns a batcher that calls flush with each flushed site's requests.
// Unset bounds take their defaults.
func New(cfg Config, flush FlushFunc) *Batcher {
	cfg.Default()
	return &Batcher{cfg: cfg, flush: flush, sites: map[*pipeline.Site]*siteBatch{}}
}

// Add appends h to its site's batch, flushing the batch first if h would
// take it past MaxBytes, and after if it reaches MaxEvents. A hit larger than
// MaxBytes on its own is sent alone. Add after Close flushes h at once.
func (b *Batcher) Add(h *pipeline.Hit) {
	size := len(h.Body) + 1
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.flush(h.Site, Split(h.Site, []*pipeline.Hit{h}))
		return
	}
	sb := b.sites[h.Site]
	if sb == nil {
		sb = &siteBatch{}
		b.sites[h.Site] = sb
	}
	var out [][]*pipeline.Hit
	if len(sb.hits) > 0 && sb.bytes+size > b.cfg.MaxBytes {
		out = append(out, b.take(sb))
	}
	if len(sb.hits) == 0 {
		gen := sb.gen
		site := h.Site
		if sb.timer == nil {
			sb.timer = time.AfterFunc(b.cfg.Linger, func() { b.linger(site, gen) })
		} else {
			sb.timer.Stop()
			sb.timer = time.AfterFunc(b.cfg.Linger, func() { b.linger(site, gen) })
		}
	}
	sb.hits = append(sb.hits, h)
	sb.bytes += size
	if len(sb.hits) >= b.cfg.MaxEvents || sb.bytes >= b.cfg.MaxBytes {
		out = append(out, b.take(sb))
	}
	b.mu.Unlock()
	for _, hits := range out {
		b.flush(h.Site, Split(h.Site, hits))
	}
}

// take empties a site's batch and returns its hits; b.mu is held.
func (b *Batcher) take(sb *siteBatch) []*pipeline.Hit {
	hits := sb.hits
	sb.hits, sb.bytes = nil, 0
	sb.gen++
	if sb.timer != nil {
		sb.timer.Stop()
		sb.timer = nil
	}
	return hits
}

func (b *Batcher) linger(site *pipeline.Site, gen uint64) {
	b.mu.Lock()
	sb := b.sites[site]
	if sb == nil || sb.gen != gen || len(sb.hits) == 0 {
		b.mu.Unlock()
		return
	}
	hits := b.take(sb)
	b.mu.Unlock()
	b.flush(site, Split(site, hits))
}

// Flush flushes every site's batch now (revoke, shutdown).
func (b *Batcher) Flush() {
	b.mu.Lock()
	type flushed struct {
		site *pipeline.Site
		hits []*pipeline.Hit
	}
	var out []flushed
	for site, sb := range b.sites {
		if len(sb.hits) > 0 {
			out = append(out, flushed{site, b.take(sb)})
		}
	}
	b.mu.Unlock()
	for _, f := range out {
		b.flush(f.site, Split(f.site, f.hits))
	}
}

// Close flushes every batch and stops the linger timers; hits added later
// are flushed one by one.
func (b *Batcher) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.Flush()
}

// Len returns how many hits are buffered.
func (b *Batcher) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, sb := range b.sites {
		n += len(sb.hits)
	}
	return n
}

// Split turns a site's hits into requests: one per visitor (IDClient), in
// order of each visitor's first hit, each with at most
// piano.MaxEventsPerRequest hits in the order given.
func Split(site *pipeline.Site, hits []*pipeline.Hit) []pipeline.Request {
	if len(hits) == 1 {
		return []pipeline.Request{{Site: site, IDClient: hits[0].IDClient, Hits: hits}}
	}
	index := make(map[string]int, len(hits))
	var reqs []pipeline.Request
	for _, h := range hits {
		i, ok := index[h.IDClient]
		if !ok || len(reqs[i].Hits) == piano.MaxEventsPerRequest {
			reqs = append(reqs, pipeline.Request{Site: site, IDClient: h.IDClient, Hits: make([]*pipeline.Hit, 0, 1)})
			i = len(reqs) - 1
			index[h.IDClient] = i
		}
		reqs[i].Hits = append(reqs[i].Hits, h)
	}
	return reqs
}
