package store

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/fleetd/fleetd/internal/geo"
)

// TestSubMaskBruteForce checks the sub-cell windows against the per-record
// window test they stand in for: a point that passes the window test must
// lie in a sub-cell of the mask, for random cells, windows and points,
// including cells on the antimeridian and at the poles.
func TestSubMaskBruteForce(t *testing.T) {
	g := newGen(t)
	for _, deg := range []float64{0.5, 1, 0.1, 45} {
		s := mustNew(t, Options{CellDeg: deg})
		gr := &s.shards[0].grid
		geom := &s.geom
		for i := 0; i < size(20000); i++ {
			// A cell: mostly random, often at an edge of the grid.
			row, col := g.r.IntN(geom.Rows), g.r.IntN(geom.Cols)
			switch g.r.IntN(4) {
			case 0:
				col = []int{0, geom.Cols - 1}[g.r.IntN(2)]
			case 1:
				row = []int{0, geom.Rows - 1}[g.r.IntN(2)]
			}
			key := uint32(row*geom.Cols + col)
			// A point in it (sometimes on its edges, or at ±180 / ±90).
			la, lo := gr.cellOrigin(key)
			lat := la + g.r.Int64N(geom.CellFixed)
			lon := lo + g.r.Int64N(geom.CellFixed)
			switch g.r.IntN(8) {
			case 0:
				lat = la
			case 1:
				lon = lo
			case 2:
				if col == 0 {
					lon = geo.MaxLonFixed
				}
			case 3:
				if row == geom.Rows-1 {
					lat = geo.MaxLatFixed
				}
			}
			if geom.Cell(int32(lat), int32(lon)) != key {
				t.Fatalf("test point (%d,%d) is not in cell %d", lat, lon, key)
			}
			if k, sub := gr.locate(int32(lat), int32(lon)); k != key || sub != gr.subOf(key, int32(lat), int32(lon)) {
				t.Fatalf("locate(%d,%d) = %d,%x; Cell, subOf: %d,%x", lat, lon, k, sub, key, gr.subOf(key, int32(lat), int32(lon)))
			}
			// A query point and windows, near the cell or anywhere.
			q := newPoint(g.r.Float64()*180-90, g.r.Float64()*360-180)
			if g.r.IntN(2) == 0 {
				q = newPoint(geo.FromFixed(int32(lat))+(g.r.Float64()-0.5)*3*deg,
					geo.NormLon(geo.FromFixed(int32(lon))+(g.r.Float64()-0.5)*3*deg))
				q.lat = math.Max(-90, math.Min(90, q.lat))
				q = newPoint(q.lat, q.lon)
			}
			h := math.Pow(10, -12+g.r.Float64()*12)
			latLim := latLimit(h)
			lonLim := q.lonLimit(h, latLim)
			inWindow := !(int64(int32(lat))-int64(q.flat) > latLim || int64(q.flat)-int64(int32(lat)) > latLim || lonDiff(int32(lon), q.flon) > lonLim)
			rows, cols := gr.subMask(key, q.flat, q.flon, latLim, lonLim)
			sub := gr.subOf(key, int32(lat), int32(lon)) >> slotBits
			inMask := (rows>>(sub>>subBits))&(cols>>(sub&subMax))&1 != 0
			if inWindow && !inMask {
				t.Fatalf("deg %v cell %d: point (%d,%d) sub %d passes the window (q %d,%d lim %d,%d) but not the mask %016b/%016b",
					deg, key, lat, lon, sub, q.flat, q.flon, latLim, lonLim, rows, cols)
			}
		}
	}
}

// TestHintsFollowMoves moves trucks by small steps (so they change sub-cell
// far more often than cell), grows one cell past hintMax and shrinks it
// again, and checks the index (Check verifies every exact hint), k-nearest
// (ties included) and Within against brute force after each round.
func TestHintsFollowMoves(t *testing.T) {
	g := newGen(t)
	for _, shards := range []int{1, 4} {
		s := mustNew(t, Options{Shards: shards})
		m := model{}
		const n = 3000
		dense := shards * hintMax * 3 / 2 // enough to make the cell loose
		pos := make([][2]float64, n+dense)
		for i := range pos {
			switch {
			case i >= n: // one cell in Kansas, packed (made loose)
				pos[i] = [2]float64{38.1 + g.r.Float64()*0.3, -98.4 + g.r.Float64()*0.3}
			case i%10 == 0: // ties: ten trucks on one spot
				pos[i] = [2]float64{39.5, -100.25}
			case i%10 == 1: // the antimeridian and the pole
				pos[i] = [2]float64{g.r.Float64() - 0.5, []float64{180, -180, 179.99999}[g.r.IntN(3)]}
				if g.r.IntN(3) == 0 {
					pos[i] = [2]float64{90, g.r.Float64()*360 - 180}
				}
			default:
				pos[i] = [2]float64{38 + g.r.Float64()*3, -101 + g.r.Float64()*3}
			}
		}
		ts := uint32(1000)
		for round := 0; round < size(12); round++ {
			ts++
			var batch []Update
			live := len(pos)
			if round >= 6 { // the dense cell empties again
				live = n + dense/(round-4)
			}
			for i := 0; i < live; i++ {
				p := &pos[i]
				if i%10 != 0 && round > 0 {
					p[0] = math.Max(-90, math.Min(90, p[0]+(g.r.Float64()-0.5)*0.03))
					p[1] = geo.NormLon(p[1] + (g.r.Float64()-0.5)*0.03)
				}
				batch = append(batch, Update{ID: fmt.Appendf(nil, "t%d", i), Position: g.pos(p[0], p[1], ts)})
			}
			for i := live; i < len(pos); i++ {
				key := fmt.Appendf(nil, "t%d", i)
				s.Delete(key)
				delete(m, string(key))
			}
			s.Apply(batch)
			m.apply(batch)
			if err := s.Check(); err != nil {
				t.Fatalf("shards %d round %d: %v", shards, round, err)
			}
			for q := 0; q < 50; q++ {
				lat, lon := 38+g.r.Float64()*3, -101+g.r.Float64()*3
				switch q % 5 {
				case 0:
					lat, lon = 39.5, -100.25 // on the tie
				case 1:
					lat, lon = g.r.Float64()-0.5, []float64{180, -180, 179.9}[g.r.IntN(3)]
				case 2:
					lat, lon = 89.9+g.r.Float64()*0.1, g.r.Float64()*360-180
				}
				checkNearest(t, s, m, lat, lon, []int{1, 5, 10, 40}[q%4], []float64{0, 0, 2000}[q%3])
				radius := []float64{300, 5000, 40000}[q%3]
				got := collect(s, Circle(lat, lon, radius))
				want := bruteWithin(m, func(p Position) bool {
					return geo.Hav(lat, lon, p.LatDeg(), p.LonDeg()) <= geo.MToHav(radius)
				})
				if !slices.Equal(got, want) {
					t.Fatalf("Circle(%v,%v,%v): %d hits, want %d", lat, lon, radius, len(got), len(want))
				}
				// Boxes: small, crossing the antimeridian, or with an edge
				// exactly on a truck.
				dlat, dlon := g.r.Float64()*0.3, g.r.Float64()*0.3
				b := geo.Box{MinLat: math.Max(-90, lat-dlat), MaxLat: math.Min(90, lat+dlat),
					MinLon: geo.NormLon(lon - dlon), MaxLon: geo.NormLon(lon + dlon)}
				if q%4 == 3 {
					p := batch[g.r.IntN(len(batch))].Position
					b = geo.Box{MinLat: p.LatDeg(), MaxLat: p.LatDeg() + dlat, MinLon: geo.NormLon(p.LonDeg() - dlon), MaxLon: p.LonDeg()}
				}
				got = collect(s, BoxRegion(b))
				want = bruteWithin(m, func(p Position) bool { return b.Contains(p.LatDeg(), p.LonDeg()) })
				if !slices.Equal(got, want) {
					t.Fatalf("Box(%+v): %d hits, want %d", b, len(got), len(want))
				}
			}
		}
	}
}

// TestBoxWindow checks a box region's window point by point: every stored
// coordinate Contains admits lies inside it, for random boxes (crossing
// the antimeridian, reaching the poles) and points on and near their edges.
func TestBoxWindow(t *testing.T) {
	g := newGen(t)
	for i := 0; i < size(200000); i++ {
		lat, lon := g.r.Float64()*180-90, g.r.Float64()*360-180
		dlat, dlon := math.Pow(10, -7+g.r.Float64()*9), math.Pow(10, -7+g.r.Float64()*9)
		b := geo.Box{MinLat: math.Max(-90, lat-dlat), MaxLat: math.Min(90, lat+dlat),
			MinLon: geo.NormLon(lon - dlon), MaxLon: geo.NormLon(lon + dlon)}
		if dlon >= 180 {
			b.MinLon, b.MaxLon = -180, 180
		}
		rg := BoxRegion(b)
		// A point: on an edge, a unit either side of one, or inside.
		pl := []float64{b.MinLat, b.MaxLat, lat}[g.r.IntN(3)]
		pn := []float64{b.MinLon, b.MaxLon, lon}[g.r.IntN(3)]
		fl := min(max(geo.ToFixed(pl)+int32(g.r.IntN(3))-1, -geo.MaxLatFixed), geo.MaxLatFixed)
		fn := min(max(geo.ToFixed(pn)+int32(g.r.IntN(3))-1, -geo.MaxLonFixed), geo.MaxLonFixed)
		if !b.Contains(geo.FromFixed(fl), geo.FromFixed(fn)) {
			continue
		}
		if d := int64(fl) - int64(rg.wLat); d > rg.wLatLim || -d > rg.wLatLim || lonDiff(fn, rg.wLon) > rg.wLonLim {
			t.Fatalf("box %+v holds (%d,%d) outside its window (%d,%d)±(%d,%d)", b, fl, fn, rg.wLat, rg.wLon, rg.wLatLim, rg.wLonLim)
		}
	}
}
