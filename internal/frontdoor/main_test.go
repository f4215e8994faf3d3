package frontdoor

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running: every
// connection's goroutine and net/http's ends with Shutdown or Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
