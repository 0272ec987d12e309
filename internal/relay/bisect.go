package relay

import (
	"net/http"
	"slices"

	"github.com/atrelay/atrelay/pipeline"
)

// A request answered 400 is Piano's answer to a bad event, but it names
// none: with more than one event, the request is split in halves and each
// half sent again, recursively, until the rejected events stand alone.
// Only those are dead-lettered; the others are delivered. A request of n
// events costs at most 2n-1 requests (a binary tree with n leaves), and one
// bad event among n costs about 2·log2(n)+1.

// bisects reports whether a rejected request is split rather than
// dead-lettered whole.
func bisects(req pipeline.Request, s pipeline.Settlement) bool {
	return s.Outcome == pipeline.Rejected && s.Status == http.StatusBadRequest && len(req.Hits) > 1
}

// halves splits req in two requests of the same visitor, the older events
// first. Their hits do not share capacity: each half filters its own hits
// in place (liveHits) without touching the other's.
func halves(req pipeline.Request) (older, newer pipeline.Request) {
	mid := len(req.Hits) / 2
	older, newer = req, req
	older.Hits = slices.Clip(req.Hits[:mid])
	newer.Hits = req.Hits[mid:]
	return older, newer
}
