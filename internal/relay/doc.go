// Package relay runs atrelay as a Kafka consumer group: it polls records,
// decodes them, runs the stages, batches and delivers hits, dead-letters what
// cannot be decoded or delivered, and commits each partition only up to its
// first record that is not settled.
//
// A record is settled when its hit was delivered (2xx), when a stage filtered
// it on purpose, or when the dead-letter topic acknowledged it. Nothing else
// moves a committed offset: a record whose delivery is still being retried
// holds its partition's commit back, and a record abandoned at a rebalance or
// at shutdown is redelivered by the partition's next owner (at-least-once).
//
// Concurrency: one goroutine polls and tracks records (with
// kgo.BlockRebalanceOnPoll, so no rebalance can slip between a poll and the
// tracking of its records); a few workers, sharded by partition so each
// partition keeps its order, decode and run the stages; the batcher queues
// per-site requests, and delivery.concurrency goroutines per site send them
// oldest first, so the committed offset follows delivery; one goroutine
// commits every commit_interval. A record's work (its requests, its DLQ
// write, a decode retry) runs under its tracker's Context, which ends when
// the partition is revoked or lost: a member stops sending a partition's
// records as soon as it no longer owns it, and a late acknowledgement can
// never commit for it.
package relay
