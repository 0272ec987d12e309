// Package pipeline turns decoded Purchasely events into Piano Analytics hits:
// the Hit, the routing (Integrations.Route) and mapping (Route.Map) compiled
// from the configured integrations, and the Stage contract for custom steps
// run after mapping, all put together by Chain.
//
// One event's path through atrelay, by package:
//
//	codec            record value -> codec.Event
//	pipeline         Route -> Map -> custom stages (this package)
//	sinks/atinternet encode; one HTTP request per visitor
//	pipeline/batch   per-site batches, split per visitor
//	sinks/dlq        what cannot be decoded or delivered
//	internal/relay   the consumer-group service that ties them together,
//	                 with internal/relay/offsets (what may be committed)
package pipeline
