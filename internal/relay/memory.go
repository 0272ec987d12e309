package relay

// The memory a running relay needs, measured on the benchmarks'
// realistic events: a buffered record keeps about 2.6 KiB live
// (BenchmarkBufferedHeap: its hit's encoded body, about 1.2 KiB; the copy
// of its Kafka record, about 0.45 KiB, see item.hold; its pooled item, 384
// bytes); besides the buffer, records flowing through (Kafka fetches,
// requests in flight) keep about 30 MiB (heap profiles of
// BenchmarkEndToEnd, ATRELAY_BENCH_HEAPPROFILE).
const (
	// memoryOverhead is twice what the service keeps whatever its buffer,
	// rounded up: the collector's room, as GOGC's default gives it.
	memoryOverhead = 64 << 20
	// memoryPerEvent is twice a buffered record's live memory, rounded
	// down: the collector's room again.
	memoryPerEvent = 5 << 10
)

// MemoryLimit is the Go memory limit (runtime/debug.SetMemoryLimit) that
// fits a relay buffering MaxBufferedEvents records: atrelay run sets it
// when neither GOMEMLIMIT nor a container (cgroup) memory limit says
// otherwise. It is the heap GOGC's default aims at when the buffer is full
// of typical events, so it costs the collector nothing more then; what it
// bounds is the rest: the heap's overshoot during a collection, and a
// buffer of larger events, which the collector then works harder for
// instead of growing the process.
func (d *Delivery) MemoryLimit() int64 {
	return memoryOverhead + int64(d.MaxBufferedEvents)*memoryPerEvent
}
