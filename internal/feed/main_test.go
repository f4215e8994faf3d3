package feed

import (
	"flag"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"
)

var seedFlag = flag.Uint64("feed.seed", 0, "replay randomized tests with this seed")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testSeed returns -feed.seed or a fresh random seed, and logs it so that a
// failure can be replayed.
func testSeed(t testing.TB) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -feed.seed=%d)", seed, seed)
	return seed
}
