// Package monitoring checks atrelay's monitoring kit — the Grafana
// dashboard (deploy/grafana), the Prometheus rules and their promtool unit
// tests (deploy/prometheus) and the runbook (deploy/RUNBOOK.md) — as tests
// only: every metric and label their queries use exists on a live /metrics
// of the service, the rules parse as Prometheus parses them, every alert
// has a promtool test that fails once the alert is broken, and every
// runbook_url has its section. It is a module of its own, so that
// Prometheus' modules stay out of the service's go.mod; it runs the service
// in-process through a replace of the parent module.
package monitoring
