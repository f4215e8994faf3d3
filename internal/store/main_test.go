package store

import (
	"testing"

	"go.uber.org/goleak"
)

// Apply starts worker goroutines for big batches; none may outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
