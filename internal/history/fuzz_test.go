package history

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/vfs"
)

// validRun returns the bytes of a small run file: one truck per block or
// grouped blocks.
func validRun(tb testing.TB, l layout) []byte {
	fs := vfs.NewMem()
	w, err := createRun(fs, "/r.fhr", 490000, 7, l)
	if err != nil {
		tb.Fatal(err)
	}
	var ids [][]byte
	for i := range 5 {
		ids = append(ids, fmt.Appendf(nil, "t%d", i))
	}
	slices.SortFunc(ids, func(a, b []byte) int { return cmp.Or(cmp.Compare(idHash(a), idHash(b)), bytes.Compare(a, b)) })
	for i, id := range ids {
		var ps []Point
		for k := range 4 + i {
			p := Point{Position: fleet.MakePosition(45+float64(k)*1e-3, 7, int64(490000*3600+k*30), float64(10*k), 90)}
			if k%2 == 0 {
				p.Attrs.Set(fleet.Altitude, int32(100*k))
			}
			ps = append(ps, p)
		}
		if err := w.Add(id, ps); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := w.Finish(); err != nil {
		tb.Fatal(err)
	}
	b, err := vfs.ReadFile(fs, "/r.fhr")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzRun feeds arbitrary bytes to the run reader as a history file: it
// must answer with points or an error, never panic, and never allocate
// more than the file's size suggests.
func FuzzRun(f *testing.F) {
	seeds := [][]byte{}
	for _, l := range []layout{layoutLegacy, layoutSolo, layoutGrouped, layoutRaw} {
		seeds = append(seeds, validRun(f, l))
	}
	groupedVersion = versionGrouped // grouped runs as fleetd wrote them before version 4
	seeds = append(seeds, validRun(f, layoutGrouped), validRun(f, layoutRaw))
	groupedVersion = versionPrefixed
	for _, good := range seeds {
		f.Add(good)
		f.Add(good[:len(good)-1])
		f.Add(good[:headerSize+trailerSize])
		flipped := append([]byte(nil), good...)
		flipped[headerSize+6] ^= 0x40
		f.Add(flipped)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		if err := vfs.WriteFile(fs, "/x.fhr", data); err != nil {
			t.Fatal(err)
		}
		r, err := openRun(fs, "/x.fhr")
		if err != nil {
			return
		}
		defer r.release()
		var buf []byte
		var g group
		var blockErr error
		_ = r.scan(func(_ int, e *entry) bool {
			buf, blockErr = r.block(e, buf, &g)
			for i := range g.pts {
				if !g.pts[i].Valid() {
					t.Fatalf("decoded an invalid point %+v", g.pts[i])
				}
			}
			return blockErr == nil
		})
		for i := range 6 {
			_, _, _ = r.find(fmt.Appendf(nil, "t%d", i), nil, &g, nil)
		}
		_ = mergeRuns([]*run{r}, func(uint64, []byte, []Point) error { return nil }, nil)
		_ = mergeRuns([]*run{r}, func(uint64, []byte, []Point) error { return nil }, func(uint64, []byte, []fleet.Position) error { return nil })
	})
}

// FuzzColumns decodes arbitrary column bytes (what a block holds past its
// trucks' IDs) as a block of trucks of per points each (the last one the
// rest), in either layout: an error or valid points, and points that
// decode re-encode to columns that decode to the same points.
func FuzzColumns(f *testing.F) {
	var ps []Point
	for k := range 6 {
		p := Point{Position: fleet.MakePosition(45+float64(k)*1e-3, 7-float64(k)*2e-3, int64(1_764_000_000+k*30), float64(10*k), 90)}
		p.Attrs.Set(fleet.Altitude, int32(10*k))
		ps = append(ps, p)
	}
	f.Add(appendColumns(nil, ps, []int{6}, layoutLegacy), 6, uint8(6), uint8(layoutLegacy))
	f.Add(appendColumns(nil, ps[:1], []int{1}, layoutLegacy), 1, uint8(1), uint8(layoutLegacy))
	f.Add(appendColumns(nil, ps, []int{6}, layoutSolo), 6, uint8(6), uint8(layoutSolo))
	f.Add(appendColumns(nil, ps, []int{2, 4, 6}, layoutGrouped), 6, uint8(2), uint8(layoutGrouped))
	f.Add(appendColumns(nil, ps, []int{6}, layoutGrouped), 6, uint8(6), uint8(layoutGrouped))
	f.Add(appendColumns(nil, ps, []int{3, 6}, layoutRaw), 6, uint8(3), uint8(layoutRaw))
	plain := make([]fleet.Position, len(ps))
	for i := range ps {
		plain[i] = ps[i].Position
	}
	f.Add(appendRawPositions(nil, plain), 6, uint8(2), uint8(layoutRaw))
	f.Fuzz(func(t *testing.T, src []byte, n int, per uint8, lay uint8) {
		l := layout(lay % 4)
		legacy := l == layoutLegacy
		if n <= 0 || n > 1<<16 || per == 0 {
			return
		}
		var ends []int
		for e := int(per); ; e += int(per) {
			ends = append(ends, min(e, n))
			if e >= n {
				break
			}
		}
		got, err := decodeColumns(nil, src, ends, legacy)
		if !legacy { // the positions decoder agrees wherever it decodes
			pos, ok, perr := decodeRawPositions(nil, src, ends)
			switch {
			case ok && (perr == nil) != (err == nil):
				t.Fatalf("decodeRawPositions: %v, decodeColumns: %v", perr, err)
			case ok && perr == nil:
				want := make([]Point, len(pos))
				for i := range pos {
					want[i] = Point{Position: pos[i]}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("decodeRawPositions and decodeColumns differ")
				}
				if again := appendRawPositions(nil, pos); !bytes.Equal(again, src) {
					t.Fatalf("raw positions re-encode differently")
				}
			}
		}
		if err != nil {
			return
		}
		again, err := decodeColumns(nil, appendColumns(nil, got, ends, l), ends, legacy)
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("re-encoding %d points: %v", len(got), err)
		}
	})
}
