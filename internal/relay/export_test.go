package relay

import "github.com/twmb/franz-go/pkg/kgo"

// Kill exposes kill to the external tests: stop as a crash would.
func Kill(r *Relay) { r.kill() }

// OnCommit makes r call fn with the offsets of every commit, before it is
// sent: the tests check the commit invariant with it on a real broker, and
// it must not block. Call it before Run.
func OnCommit(r *Relay, fn func(map[string]map[int32]kgo.EpochOffset)) { r.onCommit = fn }
