package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

const dir = "/snap"

func entries(rng *rand.Rand, n int) []wal.Entry {
	es := make([]wal.Entry, n)
	for i := range es {
		es[i] = wal.Entry{
			ID:      fmt.Appendf(nil, "truck-%07d", rng.IntN(10_000_000)),
			Lat:     int32(rng.IntN(1_800_000_001) - 900_000_000),
			Lon:     int32(rng.Int64N(3_600_000_001) - 1_800_000_000),
			TS:      1_700_000_000 + uint32(rng.IntN(3600)),
			Speed:   uint16(rng.IntN(1300)),
			Heading: uint16(rng.IntN(360)),
		}
	}
	return es
}

func write(t testing.TB, fsys vfs.FS, lsn wal.LSN, es []wal.Entry) Info {
	t.Helper()
	w, err := Create(fsys, dir, lsn)
	if err != nil {
		t.Fatal(err)
	}
	// Add through a reused buffer to prove the writer copies.
	var e wal.Entry
	id := make([]byte, 0, 32)
	for i := range es {
		id = append(id[:0], es[i].ID...)
		e = es[i]
		e.ID = id
		if err := w.Add(&e); err != nil {
			t.Fatal(err)
		}
		clear(id)
	}
	info, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func load(t testing.TB, fsys vfs.FS) (LoadResult, []wal.Entry) {
	t.Helper()
	var got []wal.Entry
	res, err := Load(fsys, dir, func(e *wal.Entry) error {
		c := *e
		c.ID = slices.Clone(e.ID)
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return res, got
}

func equal(a, b []wal.Entry) bool {
	return slices.EqualFunc(a, b, func(x, y wal.Entry) bool {
		return bytes.Equal(x.ID, y.ID) && x.Lat == y.Lat && x.Lon == y.Lon && x.TS == y.TS &&
			x.Speed == y.Speed && x.Heading == y.Heading && x.Kind == y.Kind
	})
}

func TestRoundTrip(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	for _, n := range []int{0, 1, blockEntries - 1, blockEntries, blockEntries + 1, 3*blockEntries + 17} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			fsys := vfs.NewMem()
			es := entries(rng, n)
			info := write(t, fsys, 42, es)
			if info.Count != uint64(n) || info.LSN != 42 || info.Name != "snap-00000000000000000042.fsnap" ||
				info.Path != filepath.Join(dir, info.Name) {
				t.Fatalf("info %+v", info)
			}
			if st, _ := fsys.Stat(info.Path); st.Size() != info.Bytes {
				t.Fatalf("size %d, info says %d", st.Size(), info.Bytes)
			}
			// Survives a power cut right after Commit.
			res, got := load(t, fsys.CrashClone(vfs.CrashOptions{}))
			if !equal(got, es) || res.Info != info || len(res.Skipped) != 0 {
				t.Fatalf("loaded %d entries, res %+v", len(got), res)
			}
			if v, err := Verify(fsys, info.Path); err != nil || v != info {
				t.Fatalf("Verify = %+v, %v", v, err)
			}
			if n > 1000 {
				t.Logf("%d entries: %.1f bytes/entry", n, float64(info.Bytes)/float64(n))
			}
		})
	}
}

func TestLoadEmptyDir(t *testing.T) {
	for _, fsys := range []vfs.FS{vfs.NewMem(), vfs.Default} {
		d := dir
		if fsys == vfs.Default {
			d = filepath.Join(t.TempDir(), "missing")
		}
		res, err := Load(fsys, d, func(*wal.Entry) error { t.Fatal("fn called"); return nil })
		if err != nil || res.LSN != 0 || res.Name != "" {
			t.Fatalf("Load on empty = %+v, %v", res, err)
		}
	}
}

func TestAddRejectsNonUpdates(t *testing.T) {
	fsys := vfs.NewMem()
	w, err := Create(fsys, dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&wal.Entry{ID: []byte("x"), Kind: wal.KindDelete}); err == nil {
		t.Fatal("delete accepted")
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if names, _ := fsys.List(dir); len(names) != 0 {
		t.Fatalf("Abort left %v", names)
	}
	if err := w.Add(&wal.Entry{}); !errors.Is(err, ErrDone) {
		t.Fatalf("Add after Abort = %v", err)
	}
	if _, err := w.Commit(); !errors.Is(err, ErrDone) {
		t.Fatalf("Commit after Abort = %v", err)
	}
}

// TestCorruptNewestFallsBack damages the newest of two snapshots in every
// byte (flip) and at every length (truncate), and removes it: Load always
// returns the older snapshot and reports the skipped file.
func TestCorruptNewestFallsBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	old, newer := entries(rng, 20), entries(rng, 30)
	base := vfs.NewMem()
	write(t, base, 100, old)
	info := write(t, base, 200, newer)
	good, err := vfs.ReadFile(base, info.Path)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, fsys vfs.FS, desc string, wantSkip bool) {
		t.Helper()
		res, got := load(t, fsys)
		if res.LSN != 100 || !equal(got, old) {
			t.Fatalf("%s: loaded LSN %d with %d entries", desc, res.LSN, len(got))
		}
		if wantSkip && (len(res.Skipped) != 1 || res.Skipped[0].Name != info.Name || res.Skipped[0].Reason == "") {
			t.Fatalf("%s: skipped %+v", desc, res.Skipped)
		}
	}
	replace := func(data []byte) *vfs.MemFS {
		fsys := base.CrashClone(vfs.CrashOptions{})
		if err := vfs.WriteFile(fsys, info.Path, data); err != nil {
			t.Fatal(err)
		}
		return fsys
	}
	for pos := range good {
		data := slices.Clone(good)
		data[pos] ^= 0x10
		check(t, replace(data), fmt.Sprintf("flip at %d", pos), true)
	}
	for n := range len(good) {
		check(t, replace(good[:n]), fmt.Sprintf("truncated to %d", n), true)
	}
	check(t, replace(append(slices.Clone(good), 0)), "extra byte", true)

	fsys := base.CrashClone(vfs.CrashOptions{})
	if err := fsys.Remove(info.Path); err != nil {
		t.Fatal(err)
	}
	check(t, fsys, "removed", false)

	// With the older one damaged too, Load refuses to start empty.
	fsys = replace(good[:10])
	if err := vfs.WriteFile(fsys, filepath.Join(dir, FileName(100)), []byte("junk")); err != nil {
		t.Fatal(err)
	}
	_, err = Load(fsys, dir, func(*wal.Entry) error { return nil })
	if !errors.Is(err, ErrNoValidSnapshot) || !strings.Contains(err.Error(), FileName(100)) {
		t.Fatalf("Load with only bad snapshots = %v", err)
	}
}

func TestLoadCallbackError(t *testing.T) {
	fsys := vfs.NewMem()
	write(t, fsys, 7, entries(rand.New(rand.NewPCG(5, 6)), 5000))
	stop := errors.New("stop")
	n := 0
	res, err := Load(fsys, dir, func(*wal.Entry) error {
		n++
		if n == 4500 {
			return stop
		}
		return nil
	})
	if err != stop || n != 4500 || res.LSN != 7 {
		t.Fatalf("Load = %+v, %v after %d", res, err, n)
	}
}

// TestCrashDuringWrite: a power cut before Commit completes leaves the
// previous snapshot as the newest valid one.
func TestCrashDuringWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	old := entries(rng, 100)
	mem := vfs.NewMem()
	write(t, mem, 1, old)
	w, err := Create(mem, dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddBatch(entries(rng, 3*blockEntries)); err != nil {
		t.Fatal(err)
	}
	for _, crashed := range []*vfs.MemFS{mem.CrashClone(vfs.CrashOptions{}), mem.CrashClone(vfs.CrashOptions{Rand: rng})} {
		if res, got := load(t, crashed); res.LSN != 1 || !equal(got, old) {
			t.Fatalf("after crash: LSN %d", res.LSN)
		}
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if res, _ := load(t, mem.CrashClone(vfs.CrashOptions{})); res.LSN != 2 {
		t.Fatalf("after commit: LSN %d", res.LSN)
	}
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  vfs.Op
	}{
		{"write", vfs.OpWrite},
		{"fsync", vfs.OpSync},
		{"rename", vfs.OpRename},
		{"create", vfs.OpCreate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 10))
			mem := vfs.NewMem()
			old := entries(rng, 50)
			write(t, mem, 1, old)
			ffs := vfs.NewFaultFS(mem)
			ffs.FailAll(tc.ops, syscall.ENOSPC)
			w, err := Create(ffs, dir, 2)
			if err == nil {
				err = w.AddBatch(entries(rng, 2*blockEntries))
				if err == nil {
					_, err = w.Commit()
				} else {
					w.Abort()
				}
			}
			if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "snapshot: ") {
				t.Fatalf("err = %v", err)
			}
			ffs.Reset()
			if names, _ := mem.List(dir); !slices.Equal(names, []string{FileName(1)}) {
				t.Fatalf("files left: %v", names)
			}
			if res, got := load(t, mem.CrashClone(vfs.CrashOptions{})); res.LSN != 1 || !equal(got, old) {
				t.Fatalf("LSN %d", res.LSN)
			}
		})
	}
}

// TestDirSyncFailure: if the directory fsync fails, Commit reports it and
// a power cut may or may not keep the new name, but never loses both.
func TestDirSyncFailure(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	mem := vfs.NewMem()
	write(t, mem, 1, entries(rng, 10))
	ffs := vfs.NewFaultFS(mem)
	ffs.FailNth(vfs.OpSyncDir, 1, syscall.EIO)
	w, _ := Create(ffs, dir, 2)
	w.AddBatch(entries(rng, 10))
	if _, err := w.Commit(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Commit = %v", err)
	}
	if res, _ := load(t, mem.CrashClone(vfs.CrashOptions{})); res.LSN != 1 {
		t.Fatalf("after crash LSN %d", res.LSN)
	}
	if res, _ := load(t, mem); res.LSN != 2 {
		t.Fatalf("live LSN %d", res.LSN)
	}
}

func TestPrune(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	mem := vfs.NewMem()
	for _, lsn := range []wal.LSN{10, 20, 30, 40} {
		write(t, mem, lsn, entries(rng, 3))
	}
	// An abandoned temp file (older) and an in-progress writer (newer).
	if err := vfs.WriteFile(mem, filepath.Join(dir, FileName(25)+tmpSuffix), []byte("x")); err != nil {
		t.Fatal(err)
	}
	w, err := Create(mem, dir, 50)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Prune(mem, dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	wantRemoved := []string{FileName(20), FileName(10), FileName(25) + tmpSuffix}
	if !slices.Equal(res.Removed, wantRemoved) || res.KeepWALFrom != 31 || len(res.Kept) != 2 || res.Kept[0].LSN != 40 {
		t.Fatalf("Prune = %+v", res)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatalf("in-progress writer broken by Prune: %v", err)
	}
	names, _ := mem.CrashClone(vfs.CrashOptions{}).List(dir)
	if want := []string{FileName(30), FileName(40), FileName(50)}; !slices.Equal(names, want) {
		t.Fatalf("after crash: %v, want %v", names, want)
	}
	if res, err := Prune(vfs.NewMem(), dir, 0); err != nil || len(res.Removed) != 0 || res.KeepWALFrom != 0 {
		t.Fatalf("Prune on empty = %+v, %v", res, err)
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct {
		name string
		tmp  bool
		lsn  wal.LSN
		ok   bool
	}{
		{"snap-00000000000000000042.fsnap", false, 42, true},
		{"snap-00000000000000000000.fsnap", false, 0, true},
		{"/x/snap-00000000000000000042.fsnap.tmp", true, 42, true},
		{"snap-00000000000000000042.fsnap.tmp", false, 0, false},
		{"snap-00000000000000000042.fsnap", true, 0, false},
		{"snap-0000000000000000042.fsnap", false, 0, false},
		{"wal-00000000000000000042.log", false, 0, false},
		{"snap-0000000000000000004x.fsnap", false, 0, false},
	} {
		if lsn, ok := parseName(tt.name, tt.tmp); lsn != tt.lsn || ok != tt.ok {
			t.Errorf("parseName(%q, %v) = %d, %v", tt.name, tt.tmp, lsn, ok)
		}
	}
}

func FuzzLoad(f *testing.F) {
	mem := vfs.NewMem()
	info := write(f, mem, 5, entries(rand.New(rand.NewPCG(15, 16)), 40))
	good, _ := vfs.ReadFile(mem, info.Path)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte("FLEETSNP"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := vfs.NewMem()
		fsys.MkdirAll(dir, 0o755)
		vfs.WriteFile(fsys, filepath.Join(dir, FileName(5)), data)
		n := 0
		res, err := Load(fsys, dir, func(e *wal.Entry) error {
			if e.Kind != wal.KindUpdate {
				t.Fatalf("kind %v delivered", e.Kind)
			}
			n++
			return nil
		})
		if err != nil {
			if n != 0 {
				t.Fatalf("%d entries delivered before error %v", n, err)
			}
			return
		}
		if uint64(n) != res.Count {
			t.Fatalf("delivered %d entries, info says %d", n, res.Count)
		}
	})
}
