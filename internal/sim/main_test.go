package sim

import (
	"flag"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/geo"
)

var seedFlag = flag.Uint64("seed", 0, "seed for the randomized tests (0: time-based)")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testRand returns a seeded generator and logs the seed for replay.
func testRand(t testing.TB) (*rand.Rand, uint64) {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x5eed)), seed
}

// angleDiff returns the absolute difference of two bearings in degrees, in
// [0, 180].
func angleDiff(a, b float64) float64 {
	d := geo.NormDeg(a) - geo.NormDeg(b)
	if d < 0 {
		d = -d
	}
	if d > 180 {
		d = 360 - d
	}
	return d
}
