package pipeline

import (
	"strconv"
	"time"
)

// Outcome is how a record, or a request carrying records, is settled. It is
// the one vocabulary of settlement: sinks report it, the service acts on it,
// and metrics labels, DLQ headers, span attributes and log fields spell it
// with String.
type Outcome uint8

// The outcomes. The zero value is RetryLater, so that a settlement nobody
// filled in never lets a record be committed.
const (
	// RetryLater: no final answer yet (a transient failure, or the sink's
	// context ended). The records stay unsettled and are sent again.
	RetryLater Outcome = iota
	// Delivered: the collect server accepted the records (2xx).
	Delivered
	// Filtered: the pipeline chose not to send the record; Reason says why.
	Filtered
	// Rejected: refused for good (a permanent HTTP status, an undecodable
	// record, a stage error). The record goes to the dead-letter topic.
	Rejected
	// Parked: the record's site has failed for too long; the record was
	// written to the parking topic, whose consumer delivers it once the
	// site answers again.
	Parked
)

// String returns the outcome's label. Rejected records end in the
// dead-letter topic, which is what operators count, hence "dlq".
func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Filtered:
		return "filtered"
	case Rejected:
		return "dlq"
	case Parked:
		return "parked"
	default:
		return "retry_later"
	}
}

// Settlement is the outcome of one request (or one record) with what
// explains it. Reason is a short label (http_400, corrupt, timeout, …) shared
// by the metric, the DLQ header, the span and the log line.
type Settlement struct {
	Outcome Outcome
	Reason  string
	// Status is the collect server's HTTP status, 0 without a response.
	Status int
	// Err is the failure, nil when delivered or filtered.
	Err error
	// RetryAfter is the wait a collector asked for (Retry-After), 0 when
	// it asked for none.
	RetryAfter time.Duration
}

// StatusReason returns the reason label of an HTTP status: http_<status>.
func StatusReason(status int) string { return "http_" + strconv.Itoa(status) }
