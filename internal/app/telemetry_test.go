package app_test

import (
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/telemetry"
)

// Serve gives the relay telemetry's Metrics: it counts everything the
// relay reports, rebalances, bisections, paused sites and offset gaps
// included.
var (
	_ relay.Metrics          = (*telemetry.Metrics)(nil)
	_ relay.RebalanceMetrics = (*telemetry.Metrics)(nil)
	_ relay.IsolationMetrics = (*telemetry.Metrics)(nil)
	_ relay.GapMetrics       = (*telemetry.Metrics)(nil)
)
