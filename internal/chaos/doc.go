// Package chaos is atrelay's fault suite: it runs the real atrelay binary
// as separate processes against a Kafka broker (kfake in this process, or
// the Apache Kafka of deploy/kafka/with-broker.sh), a schema registry and
// a scripted collector, injects one fault per scenario, and keeps a ledger
// per run: what was produced, delivered (once or more), dead-lettered,
// parked, filtered, and lost, and whether any commit ever passed a record
// that was not settled.
//
// The ledger is the harness's own: which event must reach which site, be
// filtered or be dead-lettered is computed from the configuration the
// harness writes, never read back from the service. A commit is checked
// against what the collector acknowledged (the collector records an event
// before it answers 2xx) and what reached the dead-letter and parking
// topics: on kfake on every OffsetCommit request (kfake.ControlKey), on a
// real broker by sampling the committed offsets every 100 ms.
//
// chaos_test.go runs a subset by default and the whole suite with
// ATRELAY_CHAOS=full (make chaos).
package chaos
