package relay

import (
	"errors"
	"time"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/fielderr"
)

// Delivery is the relay's part of the configuration's `delivery` section:
// how many requests per site, how long to wait between retries, how much
// to buffer, how often to commit, how long shutdown may take, how often a
// paused or parked site is probed and when a failing site is parked.
type Delivery struct {
	// Concurrency is how many requests per site are in flight at once.
	Concurrency int `yaml:"concurrency"`
	// Backoff is the wait between a site's retries and between decode
	// retries; the collect client and the dead-letter writer wait with it too.
	Backoff backoff.Config `yaml:"backoff"`
	// MaxBufferedEvents bounds the records read and not yet settled; at
	// the bound, fetching pauses.
	MaxBufferedEvents int `yaml:"max_buffered_events"`
	// CommitInterval is how often settled offsets are committed.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// ShutdownTimeout bounds the drain at shutdown, and at a rebalance
	// together with half the group's rebalance timeout.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// RejectProbeInterval is how often a paused site (a reject storm, see
	// pipeline.RejectPause) or a parked one (ParkAfter) is sent one of its
	// requests to learn whether it accepts them again.
	RejectProbeInterval time.Duration `yaml:"reject_probe_interval"`
	// ParkAfter is how long a site may fail (no answer, or paused) before
	// its records go to the parking topic, so that the other sites'
	// commits advance; 0 disables parking. It is a pointer so that an
	// unset key (nil: the default) differs from 0s (off).
	ParkAfter *time.Duration `yaml:"park_after"`
}

// The defaults (SPEC §5).
const (
	DefaultConcurrency = 16
	// DefaultMaxBufferedEvents holds peak RSS near 130 MiB with the
	// default memory limit (MemoryLimit); 50000 took 350 MiB, for no
	// throughput the benchmarks could tell apart; 5000 took 105 MiB, but
	// is fewer records than the default 16 requests of up to 500 events
	// carry (README, Memory).
	DefaultMaxBufferedEvents = 10000
	DefaultCommitInterval    = time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	// DefaultRejectProbeInterval: a fixed site resumes within half a
	// minute, and probing a site still wrong costs one request as often.
	DefaultRejectProbeInterval = 30 * time.Second
	// DefaultParkAfter is longer than the blips a retry absorbs, and short
	// enough that one site's outage does not hold the commits (and fill
	// the buffer) of every other site for long.
	DefaultParkAfter = 2 * time.Minute
)

// Default fills the unset keys.
func (d *Delivery) Default() {
	if d.Concurrency == 0 {
		d.Concurrency = DefaultConcurrency
	}
	d.Backoff.Default()
	if d.MaxBufferedEvents == 0 {
		d.MaxBufferedEvents = DefaultMaxBufferedEvents
	}
	if d.CommitInterval == 0 {
		d.CommitInterval = DefaultCommitInterval
	}
	if d.ShutdownTimeout == 0 {
		d.ShutdownTimeout = DefaultShutdownTimeout
	}
	if d.RejectProbeInterval == 0 {
		d.RejectProbeInterval = DefaultRejectProbeInterval
	}
	if d.ParkAfter == nil {
		after := DefaultParkAfter
		d.ParkAfter = &after
	}
}

// Parks reports whether parking is on (park_after above 0).
func (d *Delivery) Parks() bool { return d.ParkAfter != nil && *d.ParkAfter > 0 }

// Validate checks the keys; paths are relative to the section.
func (d *Delivery) Validate() error {
	var errs []error
	positive := func(key string, v int64) {
		if v <= 0 {
			errs = append(errs, fielderr.New(key, "must be positive"))
		}
	}
	positive("concurrency", int64(d.Concurrency))
	positive("max_buffered_events", int64(d.MaxBufferedEvents))
	positive("commit_interval", int64(d.CommitInterval))
	positive("shutdown_timeout", int64(d.ShutdownTimeout))
	positive("reject_probe_interval", int64(d.RejectProbeInterval))
	if d.ParkAfter != nil && *d.ParkAfter < 0 {
		errs = append(errs, fielderr.New("park_after", "must not be negative (0 disables parking)"))
	}
	errs = append(errs, fielderr.Prefix("backoff", d.Backoff.Validate()))
	return errors.Join(errs...)
}
