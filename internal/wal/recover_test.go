package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/vfs"
)

// smallLog builds a log of a few segments and returns its files and the
// location of every record.
type recLoc struct {
	seg      int // index into files
	off, end int // byte range in the segment
}

type smallLogT struct {
	names []string // segment base names, oldest first
	data  [][]byte // their contents
	recs  []recLoc // by LSN-1
}

const smallDir = "/w"

func buildSmallLog(t *testing.T, n int, segSize int64) smallLogT {
	t.Helper()
	fsys := vfs.NewMem()
	l := mustOpen(t, fsys, smallDir, Options{SegmentSize: segSize})
	for i := range n {
		if _, err := l.Append(payloadFor(i)[:8+i%7]); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, l)
	var s smallLogT
	names, _ := fsys.List(smallDir)
	for si, name := range names {
		data, err := vfs.ReadFile(fsys, filepath.Join(smallDir, name))
		if err != nil {
			t.Fatal(err)
		}
		s.names = append(s.names, name)
		s.data = append(s.data, data)
		scanSegment(name, data, func(off int, _ byte, p []byte) error {
			s.recs = append(s.recs, recLoc{si, off, off + headerSize + len(p)})
			return nil
		})
	}
	if len(s.recs) != n {
		t.Fatalf("built %d records, found %d", n, len(s.recs))
	}
	return s
}

// materialize writes files into a fresh, fully synced MemFS.
func materialize(t *testing.T, names []string, data [][]byte) *vfs.MemFS {
	t.Helper()
	fsys := vfs.NewMem()
	if err := fsys.MkdirAll(smallDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range names {
		if err := vfs.WriteFile(fsys, filepath.Join(smallDir, name), data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsys.SyncDir(smallDir); err != nil {
		t.Fatal(err)
	}
	return fsys
}

func cloneData(d [][]byte) [][]byte {
	out := make([][]byte, len(d))
	for i := range d {
		out[i] = slices.Clone(d[i])
	}
	return out
}

func checkPrefix(t *testing.T, l *Log, n int) {
	t.Helper()
	got := replayAll(t, l, 0)
	if len(got) != n {
		t.Fatalf("replayed %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if !bytes.Equal(r.payload, payloadFor(i)[:8+i%7]) || r.lsn != LSN(i+1) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if l.NextLSN() != LSN(n+1) {
		t.Fatalf("NextLSN %d, want %d", l.NextLSN(), n+1)
	}
}

// TestFlipEveryByte flips each byte of a small 3-segment log: the result
// is a tail truncation iff the byte is in the last record of the last
// segment, else a CorruptError naming the right file and record offset.
func TestFlipEveryByte(t *testing.T) {
	s := buildSmallLog(t, 18, 100)
	if len(s.names) < 3 {
		t.Fatalf("want >= 3 segments, got %d", len(s.names))
	}
	lastSeg := len(s.names) - 1
	for ri, r := range s.recs {
		for pos := r.off; pos < r.end; pos++ {
			data := cloneData(s.data)
			data[r.seg][pos] ^= 0xA5
			fsys := materialize(t, s.names, data)
			var trunc []TailTruncation
			l, err := Open(fsys, smallDir, Options{OnTailTruncated: func(tt TailTruncation) { trunc = append(trunc, tt) }})
			desc := fmt.Sprintf("flip in %s at %d (record LSN %d)", s.names[r.seg], pos, ri+1)
			if r.seg == lastSeg && ri == len(s.recs)-1 {
				if err != nil {
					t.Fatalf("%s: Open: %v", desc, err)
				}
				if len(trunc) != 1 || trunc[0].Offset != int64(r.off) || trunc[0].Dropped != int64(r.end-r.off) ||
					trunc[0].File != filepath.Join(smallDir, s.names[r.seg]) {
					t.Fatalf("%s: truncation report %+v", desc, trunc)
				}
				checkPrefix(t, l, ri)
				mustClose(t, l)
				continue
			}
			var ce *CorruptError
			if !errors.As(err, &ce) {
				if err == nil {
					l.Close()
				}
				t.Fatalf("%s: Open = %v, want CorruptError", desc, err)
			}
			if ce.File != filepath.Join(smallDir, s.names[r.seg]) || ce.Offset != int64(r.off) {
				t.Fatalf("%s: CorruptError at %s:%d, want offset %d", desc, ce.File, ce.Offset, r.off)
			}
			if !strings.Contains(ce.Error(), s.names[r.seg]) {
				t.Fatalf("error text %q does not name the file", ce.Error())
			}
		}
	}
}

// TestTruncateEveryOffset cuts the log at every byte of its concatenated
// stream (later segments removed): Open recovers exactly the records that
// were complete before the cut.
func TestTruncateEveryOffset(t *testing.T) {
	s := buildSmallLog(t, 15, 120)
	for si := range s.names {
		for cut := 0; cut <= len(s.data[si]); cut++ {
			if cut == 0 && si == 0 {
				continue // an empty first segment is covered by cut 0 below
			}
			data := cloneData(s.data[:si+1])
			data[si] = data[si][:cut]
			fsys := materialize(t, s.names[:si+1], data)
			var trunc []TailTruncation
			l, err := Open(fsys, smallDir, Options{OnTailTruncated: func(tt TailTruncation) { trunc = append(trunc, tt) }})
			if err != nil {
				t.Fatalf("cut %s at %d: %v", s.names[si], cut, err)
			}
			complete, partialStart := 0, -1
			for _, r := range s.recs {
				if r.seg < si || (r.seg == si && r.end <= cut) {
					complete++
				} else if r.seg == si && r.off < cut {
					partialStart = r.off
				}
			}
			checkPrefix(t, l, complete)
			if partialStart >= 0 {
				if len(trunc) != 1 || trunc[0].Offset != int64(partialStart) || trunc[0].Dropped != int64(cut-partialStart) {
					t.Fatalf("cut %s at %d: truncation report %+v, want offset %d", s.names[si], cut, trunc, partialStart)
				}
			} else if len(trunc) != 0 {
				t.Fatalf("cut at a record boundary reported %+v", trunc)
			}
			// The log continues at the right LSN.
			if lsn, err := l.Append([]byte("next")); err != nil || lsn != LSN(complete+1) {
				t.Fatalf("append after recovery = %d, %v", lsn, err)
			}
			mustClose(t, l)
		}
	}
}

func TestRecoverZeroAndGarbageTails(t *testing.T) {
	s := buildSmallLog(t, 6, 1<<20)
	rng := rand.New(rand.NewPCG(11, 12))
	garbage := make([]byte, 300)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	for _, tail := range [][]byte{make([]byte, 4096), make([]byte, 3), garbage, append(make([]byte, 9), garbage...)} {
		data := cloneData(s.data)
		data[0] = append(data[0], tail...)
		fsys := materialize(t, s.names, data)
		var trunc []TailTruncation
		l, err := Open(fsys, smallDir, Options{OnTailTruncated: func(tt TailTruncation) { trunc = append(trunc, tt) }})
		if err != nil {
			t.Fatal(err)
		}
		if len(trunc) != 1 || trunc[0].Dropped != int64(len(tail)) || trunc[0].Offset != int64(len(s.data[0])) {
			t.Fatalf("tail of %d bytes: report %+v", len(tail), trunc)
		}
		t.Log(trunc[0])
		checkPrefix(t, l, 6)
		mustClose(t, l)
	}
}

func TestRepair(t *testing.T) {
	s := buildSmallLog(t, 18, 100)
	mid := s.recs[len(s.recs)/2] // in a middle segment
	if mid.seg == 0 || mid.seg == len(s.names)-1 {
		t.Fatalf("record not in a middle segment")
	}
	data := cloneData(s.data)
	data[mid.seg][mid.off+headerSize] ^= 1
	fsys := materialize(t, s.names, data)
	_, err := Open(fsys, smallDir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Open = %v", err)
	}
	rep, err := Repair(fsys, smallDir)
	if err != nil {
		t.Fatal(err)
	}
	kept := len(s.recs) / 2
	wantDropped := int64(len(s.data[mid.seg]) - mid.off)
	for _, d := range s.data[mid.seg+1:] {
		wantDropped += int64(len(d))
	}
	if rep.Corruption == nil || *rep.Corruption != *ce || rep.BytesDropped != wantDropped ||
		!slices.Equal(rep.RemovedSegments, s.names[mid.seg+1:]) || rep.NextLSN != LSN(kept+1) {
		t.Fatalf("report %+v (corruption %+v), want dropped %d", rep, rep.Corruption, wantDropped)
	}
	l := mustOpen(t, fsys, smallDir, Options{})
	checkPrefix(t, l, kept)
	mustClose(t, l)
	// A second repair finds nothing to do.
	if rep, err := Repair(fsys, smallDir); err != nil || rep.Corruption != nil || rep.NextLSN != LSN(kept+1) {
		t.Fatalf("second Repair = %+v, %v", rep, err)
	}
}

func TestRecoverSegmentGapsAndOverlaps(t *testing.T) {
	s := buildSmallLog(t, 18, 100)
	if len(s.names) < 4 {
		t.Fatalf("want >= 4 segments, got %d", len(s.names))
	}
	firstOf := func(i int) LSN { f, _ := parseSegmentName(s.names[i]); return f }

	t.Run("missing middle segment", func(t *testing.T) {
		names := slices.Delete(slices.Clone(s.names), 1, 2)
		data := slices.Delete(cloneData(s.data), 1, 2)
		fsys := materialize(t, names, data)
		_, err := Open(fsys, smallDir, Options{})
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != filepath.Join(smallDir, s.names[0]) || ce.Offset != int64(len(s.data[0])) ||
			!strings.Contains(ce.Reason, "missing") {
			t.Fatalf("Open = %v", err)
		}
		rep, err := Repair(fsys, smallDir)
		if err != nil || len(rep.RemovedSegments) != len(names)-1 || rep.NextLSN != firstOf(1) {
			t.Fatalf("Repair = %+v, %v", rep, err)
		}
		l := mustOpen(t, fsys, smallDir, Options{})
		checkPrefix(t, l, int(firstOf(1)-1))
		mustClose(t, l)
	})

	t.Run("overlap", func(t *testing.T) {
		names := slices.Clone(s.names)
		over := firstOf(1) - 2 // segment 1 claims to start two records early
		names[1] = segmentName(over)
		fsys := materialize(t, names, cloneData(s.data))
		_, err := Open(fsys, smallDir, Options{})
		var ce *CorruptError
		cutRec := s.recs[over-1]
		if !errors.As(err, &ce) || ce.File != filepath.Join(smallDir, s.names[0]) || ce.Offset != int64(cutRec.off) ||
			!strings.Contains(ce.Reason, "overlap") {
			t.Fatalf("Open = %v, want overlap at %d", err, cutRec.off)
		}
		rep, err := Repair(fsys, smallDir)
		if err != nil || rep.NextLSN != over {
			t.Fatalf("Repair = %+v, %v", rep, err)
		}
		l := mustOpen(t, fsys, smallDir, Options{})
		checkPrefix(t, l, int(over-1))
		mustClose(t, l)
	})

	t.Run("stale empty segment", func(t *testing.T) {
		// An empty file between segments 1 and 2, as a rotation whose
		// directory fsync failed leaves behind.
		stale := segmentName(firstOf(1) + 1)
		names := slices.Insert(slices.Clone(s.names), 2, stale)
		data := slices.Insert(cloneData(s.data), 2, nil)
		fsys := materialize(t, names, data)
		l := mustOpen(t, fsys, smallDir, Options{})
		checkPrefix(t, l, len(s.recs))
		mustClose(t, l)
		if _, err := fsys.Stat(filepath.Join(smallDir, stale)); err == nil {
			t.Fatal("stale segment not removed")
		}
	})

	t.Run("corrupt last record of earlier segment", func(t *testing.T) {
		data := cloneData(s.data)
		data[0] = data[0][:len(data[0])-1] // torn, but not in the last segment
		fsys := materialize(t, s.names, data)
		_, err := Open(fsys, smallDir, Options{})
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != filepath.Join(smallDir, s.names[0]) {
			t.Fatalf("Open = %v", err)
		}
	})
}

// TestReplayDetectsLaterCorruption: damage appearing after Open is
// reported by Replay as a CorruptError.
func TestReplayDetectsLaterCorruption(t *testing.T) {
	fsys := vfs.NewMem()
	l := mustOpen(t, fsys, smallDir, Options{SegmentSize: 100})
	defer mustClose(t, l)
	for i := range 10 {
		l.Append(payloadFor(i))
	}
	names, _ := fsys.List(smallDir)
	path := filepath.Join(smallDir, names[0])
	data, _ := vfs.ReadFile(fsys, path)
	data[headerSize] ^= 1
	f, _ := fsys.OpenFile(path, 2, 0)
	f.WriteAt(data, 0)
	f.Close()
	var ce *CorruptError
	if err := l.Replay(0, func(LSN, byte, []byte) error { return nil }); !errors.As(err, &ce) || ce.Offset != 0 {
		t.Fatalf("Replay = %v", err)
	}
}

func FuzzReadSegment(f *testing.F) {
	var seg []byte
	for i := range 5 {
		seg = appendRecord(seg, byte(1+i), payloadFor(i))
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add(append(slices.Clone(seg), make([]byte, 20)...))
	f.Add([]byte{})
	f.Add(make([]byte, 9))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rebuilt []byte
		n, end, bad, err := scanSegment("seg", data, func(off int, typ byte, p []byte) error {
			if off != len(rebuilt) {
				t.Fatalf("record at %d, expected %d", off, len(rebuilt))
			}
			rebuilt = appendRecord(rebuilt, typ, p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if end != len(rebuilt) || !bytes.Equal(rebuilt, data[:end]) || n < 0 {
			t.Fatalf("valid prefix %d does not re-encode to the input", end)
		}
		if bad == nil {
			if end != len(data) {
				t.Fatalf("clean scan stopped at %d of %d", end, len(data))
			}
			return
		}
		if bad.Offset != int64(end) || bad.File != "seg" || bad.Reason == "" {
			t.Fatalf("bad = %+v, end %d", bad, end)
		}
		tail, why := isTornTail(data, end)
		if why == "" {
			t.Fatal("no reason")
		}
		if tail {
			// Nothing valid may follow a torn tail.
			for c := end + 1; c+headerSize <= len(data); c++ {
				if _, _, reason := parseRecord(data, c); reason == "" {
					t.Fatalf("torn tail at %d but a valid record at %d", end, c)
				}
			}
		}
	})
}

// TestCrashTornTails simulates power cuts that keep a random prefix of
// unsynced writes: Open always succeeds and keeps every acknowledged record.
func TestCrashTornTails(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 13))
	for iter := range 30 {
		fsys := vfs.NewMem()
		// FsyncNever leaves unsynced data behind for the crash to tear.
		l := mustOpen(t, fsys, smallDir, Options{Fsync: FsyncNever, SegmentSize: 256})
		synced := 0
		n := 10 + rng.IntN(40)
		for i := range n {
			if _, err := l.Append(payloadFor(i)[:8+i%7]); err != nil {
				t.Fatal(err)
			}
			if rng.IntN(8) == 0 {
				// Close+reopen fsyncs everything appended so far.
				mustClose(t, l)
				l = mustOpen(t, fsys, smallDir, Options{Fsync: FsyncNever, SegmentSize: 256})
				synced = i + 1
			}
		}
		crashed := fsys.CrashClone(vfs.CrashOptions{Rand: rng})
		mustClose(t, l)
		l2, err := Open(crashed, smallDir, Options{})
		if err != nil {
			t.Fatalf("iter %d: Open after crash: %v", iter, err)
		}
		got := replayAll(t, l2, 0)
		if len(got) < synced {
			t.Fatalf("iter %d: %d records survived, %d were synced", iter, len(got), synced)
		}
		for i, r := range got {
			if !bytes.Equal(r.payload, payloadFor(i)[:8+i%7]) {
				t.Fatalf("iter %d: record %d corrupted", iter, i)
			}
		}
		mustClose(t, l2)
	}
}
