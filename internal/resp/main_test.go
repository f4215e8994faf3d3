package resp

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if floorChild() { // BenchmarkRoundTripFloor's server process
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
