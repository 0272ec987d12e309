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
//	sinks/dlq        what cannot be decoded or delivered
//	internal/relay   the consumer-group service that ties them together,
//	                 with internal/relay/offsets (what may be committed)
package pipeline
