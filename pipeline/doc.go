// Package pipeline turns decoded Purchasely events into Piano Analytics hits:
// the Stage contract, the Hit that flows through it, and the filter, rename
// and enrich stages built from the configured integrations.
//
// One event's path through atrelay, by package:
//
//	codec            record value -> codec.Event
//	pipeline         filter -> rename -> enrich (this package)
//	sinks/atinternet encode; one HTTP request per visitor
//	pipeline/batch   per-site batches, split per visitor
//	pipeline/offsets per-partition settlement and the committable offset
//	sinks/dlq        what cannot be decoded or delivered
//	pipeline/relay   the consumer group that ties them together
package pipeline
