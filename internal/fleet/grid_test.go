package fleet

import (
	"math/rand/v2"
	"testing"

	"github.com/fleetd/fleetd/internal/geo"
)

func TestNewGrid(t *testing.T) {
	for _, deg := range []float64{0, -1, 0.7, 91, 1e-8} {
		if _, err := NewGrid(deg); err == nil {
			t.Errorf("NewGrid(%v) accepted", deg)
		}
	}
	g, err := NewGrid(0.5)
	if err != nil || g.Rows != 360 || g.Cols != 720 || g.CellFixed != 5_000_000 {
		t.Fatalf("NewGrid(0.5) = %+v, %v", g, err)
	}
}

// TestGridCells: every point lies in the box of its cell, and the edges
// behave as documented (180 is -180, 90 is in the last row).
func TestGridCells(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, deg := range []float64{0.5, 1, 0.25, 90} {
		g, _ := NewGrid(deg)
		for range 20000 {
			lat := int32(r.Int64N(2*geo.MaxLatFixed+1) - geo.MaxLatFixed)
			lon := int32(r.Int64N(2*geo.MaxLonFixed+1) - geo.MaxLonFixed)
			b := g.CellBox(g.Cell(lat, lon))
			la, lo := geo.FromFixed(lat), geo.FromFixed(lon)
			if lon == geo.MaxLonFixed {
				lo = -180
			}
			if la < b.MinLat || la > b.MaxLat || lo < b.MinLon || lo > b.MaxLon {
				t.Fatalf("%v°: (%v, %v) outside its cell %+v", deg, la, lo, b)
			}
			if g.RowDeg(la) != g.Row(lat) || g.ColDeg(geo.FromFixed(lon)) != g.Col(lon) {
				t.Fatalf("%v°: degree and fixed mappings disagree at (%v, %v)", deg, la, lo)
			}
		}
		if g.Col(geo.MaxLonFixed) != 0 || g.Col(-geo.MaxLonFixed) != 0 || g.Row(geo.MaxLatFixed) != g.Rows-1 || g.Row(-geo.MaxLatFixed) != 0 {
			t.Fatalf("%v°: edges", deg)
		}
	}
}
