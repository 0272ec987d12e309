package relay

// Kill exposes kill to the external tests: stop as a crash would.
func Kill(r *Relay) { r.kill() }
