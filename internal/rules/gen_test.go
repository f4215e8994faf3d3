package rules

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed for the randomized tests (0: time-based); each test logs the seed it used")

// testSeed returns the seed for a randomized test and logs it so that a
// failure can be replayed with -seed.
func testSeed(t testing.TB) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return seed
}

// exprGen generates random well-typed rule sources from the grammar.
type exprGen struct {
	r     *rand.Rand
	zones []string
}

var genFields = []string{"speed", "heading", "lat", "lon", "ts", "prev.speed", "prev.heading", "prev.lat", "prev.lon", "prev.ts", "dt", "moved_m"}

var genNumbers = []string{"0", "1", "2", "3", "10", "30", "60", "90", "180", "0.5", "2.5e-3", "1e3", "1e308", "3600", "52.52", "13.405", "100000", ".25", "7"}

func (g *exprGen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

// sp returns white space or none, to vary token spacing.
func (g *exprGen) sp() string {
	switch g.r.IntN(8) {
	case 0:
		return ""
	case 1:
		return "\n\t"
	}
	return " "
}

func (g *exprGen) binop(x, op, y string) string {
	return x + g.sp() + op + g.sp() + y
}

func (g *exprGen) num(depth int) string {
	if depth <= 0 {
		if g.r.IntN(2) == 0 {
			return g.pick(genNumbers)
		}
		return g.pick(genFields)
	}
	d := depth - 1
	switch g.r.IntN(13) {
	case 0:
		return g.pick(genNumbers)
	case 1, 2:
		return g.pick(genFields)
	case 3, 4:
		return g.binop(g.num(d), g.pick([]string{"+", "-", "*", "/", "%"}), g.num(d))
	case 5:
		return "-" + g.num(d)
	case 6:
		return "(" + g.num(d) + ")"
	case 7:
		return "abs(" + g.num(d) + ")"
	case 8:
		return g.pick([]string{"min", "max"}) + "(" + g.num(d) + "," + g.sp() + g.num(d) + ")"
	case 9:
		return "distance_m(" + g.num(d) + ", " + g.num(d) + ")"
	case 10:
		return "hour()"
	case 11:
		return "(" + g.binop(g.num(d), g.pick([]string{"+", "-", "*", "/", "%"}), g.num(d)) + ")"
	default:
		return g.pick(genFields)
	}
}

func (g *exprGen) zoneCall(d int) string {
	z := g.pick(g.zones)
	if g.r.IntN(2) == 0 {
		return fmt.Sprintf("inside(%q)", z)
	}
	if g.r.IntN(4) == 0 {
		return fmt.Sprintf("near(%q, %s)", z, g.num(d)) // radius not constant
	}
	return fmt.Sprintf("near(%q, %d)", z, g.r.IntN(50000))
}

// operand parenthesises s for a unary operator unless it is atomic.
func (g *exprGen) operand(s string) string {
	if strings.ContainsAny(s, " \n\t<>=!&|+-*/%") || strings.HasPrefix(s, "!") {
		return "(" + s + ")"
	}
	return s
}

func (g *exprGen) boolean(depth int) string {
	if depth <= 0 {
		switch g.r.IntN(6) {
		case 0:
			return g.pick([]string{"true", "false"})
		case 1:
			return g.zoneCall(0)
		}
		return g.binop(g.num(0), g.pick([]string{"<", "<=", ">", ">=", "==", "!="}), g.num(0))
	}
	d := depth - 1
	switch g.r.IntN(12) {
	case 0, 1, 2:
		return g.binop(g.num(d), g.pick([]string{"<", "<=", ">", ">=", "==", "!="}), g.num(d))
	case 3, 4:
		return g.binop(g.boolean(d), "&&", g.boolean(d))
	case 5:
		return g.binop(g.boolean(d), "||", g.boolean(d))
	case 6:
		return "!" + g.operand(g.boolean(d))
	case 7:
		return "(" + g.boolean(d) + ")"
	case 8:
		return "(" + g.boolean(d) + ")" + g.sp() + g.pick([]string{"==", "!="}) + g.sp() + "(" + g.boolean(d) + ")"
	case 9:
		return g.zoneCall(d)
	case 10:
		return g.pick([]string{"true", "false"})
	default:
		return "(" + g.binop(g.boolean(d), g.pick([]string{"&&", "||"}), g.boolean(d)) + ")"
	}
}

// randInput returns an update near one of the test zones or anywhere,
// sometimes without a previous state and sometimes with odd values.
func randInput(r *rand.Rand, z *fakeZones) Input {
	pick := func(s State) State { return s }
	var lat, lon float64
	if zone := z.zones[r.IntN(len(z.zones))]; r.IntN(4) != 0 {
		lat, lon = (zone.minLat+zone.maxLat)/2, (zone.minLon+zone.maxLon)/2
		lat += (r.Float64() - 0.5) * 0.2
		lon += (r.Float64() - 0.5) * 0.2
	} else {
		lat, lon = r.Float64()*180-90, r.Float64()*360-180
	}
	ts := int64(1_600_000_000 + r.IntN(200_000_000))
	in := Input{
		State: pick(State{Lat: lat, Lon: lon, Speed: r.Float64() * 150, Heading: r.Float64() * 360, TS: ts}),
		Prev: State{
			Lat: lat + (r.Float64()-0.5)*0.01, Lon: lon + (r.Float64()-0.5)*0.01,
			Speed: r.Float64() * 150, Heading: r.Float64() * 360, TS: ts - int64(r.IntN(120)),
		},
		HasPrev: r.IntN(5) != 0,
	}
	odd := []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), 1e308, -5}
	if r.IntN(10) == 0 {
		in.Speed = odd[r.IntN(len(odd))]
	}
	if r.IntN(20) == 0 {
		in.Heading = odd[r.IntN(len(odd))]
	}
	if r.IntN(30) == 0 {
		in.Prev.Lat = odd[r.IntN(len(odd))]
	}
	if r.IntN(20) == 0 {
		in.Prev.TS = in.TS // dt == 0
	}
	return in
}

func TestExprGenCompiles(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 1))
	g := &exprGen{r: r, zones: testZones().ZoneNames()}
	for i := 0; i < 500; i++ {
		src := g.boolean(r.IntN(6))
		if _, err := Compile(src, testZones()); err != nil && !strings.Contains(err.Error(), "radius") {
			t.Fatalf("generated rule %q: %+v", src, err)
		}
	}
}
