package history

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/vfs"
)

// TestPrefixedIDs writes the same random trucks as grouped runs of
// version 2 (whole IDs) and version 4 (front-coded), both layouts, and
// reads each back block by block and truck by truck: the same IDs and
// points in the same order, absent IDs not found, and version 4 the
// smaller where the IDs share a stem (one byte a truck larger where
// they share nothing). The IDs share prefixes of every length, some are prefixes of
// others, some are fleet.MaxIDLen long (a block's rebuilt IDs outgrow
// their first buffer).
func TestPrefixedIDs(t *testing.T) {
	r := seeded(t)
	const hour = 490000
	for round := range 40 {
		seen := map[string]bool{}
		var ids [][]byte
		stems := []string{"", "truck-0", "35630704", "x"}
		if round%3 != 0 {
			stems = stems[1+round%2 : 2+round%2] // one fleet: its IDs share a stem
		}
		for len(ids) < 1+r.IntN(600) {
			id := []byte(stems[r.IntN(len(stems))])
			for n := r.IntN(12); n > 0 || len(id) == 0; n-- {
				id = append(id, "0123456789ab"[r.IntN(12)])
			}
			if len(ids) > 0 && r.IntN(4) == 0 { // a prefix of another, or one longer
				id = slices.Clone(ids[r.IntN(len(ids))])
				if len(id) > 1 && r.IntN(2) == 0 {
					id = id[:1+r.IntN(len(id)-1)]
				} else {
					id = append(id, '7')
				}
			}
			if round%4 == 3 {
				id = append(id, bytes.Repeat([]byte{'z'}, fleet.MaxIDLen)...)[:fleet.MaxIDLen]
				id[r.IntN(fleet.MaxIDLen)] = byte('A' + r.IntN(26))
			}
			if !seen[string(id)] {
				seen[string(id)] = true
				ids = append(ids, id)
			}
		}
		slices.SortFunc(ids, func(a, b []byte) int { return cmp.Or(cmp.Compare(idHash(a), idHash(b)), bytes.Compare(a, b)) })
		index := map[string]int{}
		for i, id := range ids {
			index[string(id)] = i
		}
		pts := make([][]Point, len(ids))
		perTruck := 1 + r.IntN(6) // 1: raw blocks; more: columns
		for i := range ids {
			for k := range 1 + r.IntN(perTruck) {
				pts[i] = append(pts[i], Point{Position: fleet.MakePosition(45+r.Float64(), 7+r.Float64(), int64(hour*3600+k*30), float64(r.IntN(100)), 90)})
			}
		}
		layout := []layout{layoutGrouped, layoutRaw}[round%2]
		var size [5]int
		for _, v := range []uint32{versionGrouped, versionPrefixed} {
			groupedVersion = v
			fs := vfs.NewMem()
			w, err := createRun(fs, "/r.fhr", hour, 1, layout)
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				if err := w.Add(id, pts[i]); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.Finish(); err != nil {
				t.Fatal(err)
			}
			groupedVersion = versionPrefixed
			b, err := vfs.ReadFile(fs, "/r.fhr")
			if err != nil {
				t.Fatal(err)
			}
			size[v] = len(b)
			rn, err := openRun(fs, "/r.fhr")
			if err != nil {
				t.Fatal(err)
			}
			if rn.version != v {
				t.Fatalf("version %d, want %d", rn.version, v)
			}
			var buf []byte
			var g group
			i := 0
			err = rn.scan(func(_ int, e *entry) bool {
				if buf, err = rn.block(e, buf, &g); err != nil {
					t.Fatal(err)
				}
				if v == versionPrefixed {
					checkListsID(t, rn, e, buf, g.ids)
				}
				for k := range g.trucks() {
					id, ps := g.truck(k)
					if i >= len(ids) || !bytes.Equal(id, ids[i]) || !slices.Equal(ps, pts[i]) {
						t.Fatalf("round %d, version %d, truck %d: %q %v, want %q %v", round, v, i, id, ps, ids[i], pts[i])
					}
					i++
				}
				return true
			})
			if err != nil || i != len(ids) {
				t.Fatalf("round %d, version %d: %d trucks of %d read, %v", round, v, i, len(ids), err)
			}
			for k := 0; k < len(ids); k += 1 + len(ids)/50 {
				_, got, err := rn.find(ids[k], nil, &g, nil)
				if err != nil || !slices.Equal(got, pts[k]) {
					t.Fatalf("round %d, version %d: find %q: %v %v, want %v", round, v, ids[k], err, got, pts[k])
				}
			}
			// IDs near the ones there: a prefix of one, one longer, one
			// changed in its last byte: found exactly when they are there.
			for k := 0; k < len(ids); k += 1 + len(ids)/50 {
				id := ids[k]
				for _, near := range [][]byte{id[:len(id)-1], append(slices.Clip(id), '0'), append(slices.Clip(id[:len(id)-1]), id[len(id)-1]^1), []byte("truck-0-absent")} {
					_, got, err := rn.find(near, nil, &g, nil)
					j, there := index[string(near)]
					if err != nil || there != (len(got) > 0) || there && !slices.Equal(got, pts[j]) {
						t.Fatalf("round %d, version %d: find %q (there: %v): %v %v", round, v, near, there, err, got)
					}
				}
			}
			rn.release()
		}
		// Version 4 costs a byte a truck more where neighbours in hash
		// order share nothing (a random byte in the stem does that), so
		// only a fleet of many trucks is sure to come out smaller.
		if round%3 != 0 && len(ids) >= 50 && size[versionPrefixed] >= size[versionGrouped] {
			t.Fatalf("round %d: version 4 is %d bytes, version 2 %d (%d trucks %q…)", round, size[versionPrefixed], size[versionGrouped], len(ids), ids[:min(3, len(ids))])
		}
	}
}

func TestCommonPrefix(t *testing.T) {
	for _, c := range []struct {
		a, b string
		n    int
	}{{"", "", 0}, {"a", "", 0}, {"abc", "abd", 2}, {"truck-0001234", "truck-0001299", 11}, {"truck-0001234", "truck-0001234", 13},
		{"0123456789abcdef", "0123456789abcdeX", 15}, {"01234567", "012345678", 8}, {"x1234567", "y1234567", 0}} {
		if got := commonPrefix([]byte(c.a), []byte(c.b)); got != c.n {
			t.Errorf("commonPrefix(%q, %q) = %d, want %d", c.a, c.b, got, c.n)
		}
	}
}

// checkListsID checks listsID on block e (read into buf), whose trucks
// are ids, against the IDs themselves, for each of them and IDs near them.
func checkListsID(t *testing.T, rn *run, e *entry, buf []byte, ids [][]byte) {
	t.Helper()
	b := buf[4:]
	trucks, n := binary.Uvarint(b)
	in := map[string]bool{}
	for _, id := range ids {
		in[string(id)] = true
	}
	for _, id := range ids {
		for _, want := range [][]byte{id, id[:len(id)-1], append(slices.Clip(id), '7'), append(slices.Clip(id[:len(id)-1]), id[len(id)-1]^1)} {
			if len(want) == 0 {
				continue
			}
			got, err := rn.listsID(e, b[n:], trucks, want)
			if err != nil || got != in[string(want)] {
				t.Fatalf("listsID(%q) = %v, %v; the block's IDs: %q", want, got, err, ids)
			}
		}
	}
}
