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
// partition keeps its order, decode and run the stages; the batcher hands
// per-site requests to the sink on their own goroutines; one goroutine
// commits every commit_interval. The revoke callback drains, commits and
// closes the revoked partitions' trackers, so a late acknowledgement can never
// commit for a partition this member no longer owns.
package relay
