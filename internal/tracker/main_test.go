package tracker

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running:
// connection loops, committers and trackers must stop with their owner.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
