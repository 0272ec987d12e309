package relay_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a
// worker, sender or commit loop that Run does not wait for, a DLQ write
// that never ends, or a Kafka client that is not closed. Nothing is
// ignored: kfake, kgo, srfake and the httptest servers stop all their
// goroutines when closed.
// Mutation caught: Run not closing the DLQ writer (`defer r.dlq.Close()`
// deleted): the writer's kgo client goroutines outlive the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
