package park_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a write
// that never ends, or a client that Close does not close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
