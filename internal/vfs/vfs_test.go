package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// testFS runs the same conformance checks against every implementation.
func testFS(t *testing.T, fsys FS, root string) {
	t.Helper()
	dir := filepath.Join(root, "a", "b")
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "f")
	f, err := fsys.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello world")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("W"), 6); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8); err != nil {
		t.Fatal(err)
	}
	// Truncate does not move the offset: this write leaves a zero hole.
	if _, err := f.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil || st.Size() != 12 || st.IsDir() {
		t.Fatalf("stat: %v %v", st, err)
	}
	buf := make([]byte, 20)
	n, err := f.ReadAt(buf, 0)
	if !errors.Is(err, io.EOF) || n != 12 {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if want := []byte("hello Wo\x00\x00\x00!"); !bytes.Equal(buf[:n], want) {
		t.Fatalf("contents %q, want %q", buf[:n], want)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("write after close succeeded")
	}

	// Sequential Read.
	r, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(r)
	if err != nil || len(all) != 12 {
		t.Fatalf("ReadAll = %q, %v", all, err)
	}
	if _, err := r.Write([]byte("x")); err == nil {
		t.Fatal("write to read-only file succeeded")
	}
	r.Close()

	// Rename, List, Stat, Remove, SyncDir.
	name2 := filepath.Join(dir, "g")
	if err := fsys.Rename(name, name2); err != nil {
		t.Fatal(err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(fsys, filepath.Join(dir, "e"), []byte("e")); err != nil {
		t.Fatal(err)
	}
	names, err := fsys.List(dir)
	if err != nil || !slices.Equal(names, []string{"e", "g"}) {
		t.Fatalf("List = %v, %v", names, err)
	}
	if _, err := fsys.Stat(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat(old) = %v", err)
	}
	if st, err := fsys.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("Stat(dir) = %v, %v", st, err)
	}
	if _, err := fsys.OpenFile(name2, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL on existing: %v", err)
	}
	if err := fsys.Remove(name2); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Remove(name2); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second Remove = %v", err)
	}
	if _, err := fsys.Open(name2); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open(removed) = %v", err)
	}
	got, err := ReadFile(fsys, filepath.Join(dir, "e"))
	if err != nil || string(got) != "e" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	if err := SyncParent(fsys, dir); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultFS(t *testing.T) { testFS(t, Default, t.TempDir()) }
func TestMemFS(t *testing.T)     { testFS(t, NewMem(), "/root") }
func TestFaultFSPassThrough(t *testing.T) {
	f := NewFaultFS(NewMem())
	testFS(t, f, "/x")
	if f.Failures() != 0 || f.Count(OpWrite) == 0 || f.Count(OpRename) != 1 {
		t.Fatalf("failures %d writes %d renames %d", f.Failures(), f.Count(OpWrite), f.Count(OpRename))
	}
}

func TestMemCrashClone(t *testing.T) {
	m := NewMem()
	must(t, m.MkdirAll("/d", 0o755))
	// synced file, dir synced: survives with synced contents only.
	f, err := m.Create("/d/a")
	must(t, err)
	write(t, f, "durable")
	must(t, f.Sync())
	write(t, f, "-lost")
	// renamed without SyncDir: old name survives.
	h, err := m.Create("/d/c.tmp")
	must(t, err)
	write(t, h, "renamed")
	must(t, h.Sync())
	must(t, m.SyncDir("/d"))
	must(t, m.Rename("/d/c.tmp", "/d/c"))
	// created and synced, but dir not synced afterwards: vanishes.
	g, err := m.Create("/d/b")
	must(t, err)
	write(t, g, "nodirsync")
	must(t, g.Sync())

	c := m.CrashClone(CrashOptions{})
	names, err := c.List("/d")
	must(t, err)
	if !slices.Equal(names, []string{"a", "c.tmp"}) {
		t.Fatalf("after crash: %v", names)
	}
	if got, _ := ReadFile(c, "/d/a"); string(got) != "durable" {
		t.Fatalf("a = %q", got)
	}
	if got, _ := ReadFile(c, "/d/c.tmp"); string(got) != "renamed" {
		t.Fatalf("c.tmp = %q", got)
	}
	// The original is untouched.
	if got, _ := ReadFile(m, "/d/a"); string(got) != "durable-lost" {
		t.Fatalf("original a = %q", got)
	}
	// After SyncDir the rename is durable.
	must(t, m.SyncDir("/d"))
	c = m.CrashClone(CrashOptions{})
	if names, _ := c.List("/d"); !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("after dir sync: %v", names)
	}
	// Truncation below the synced size is undone by a crash.
	must(t, f.Truncate(2))
	if got, _ := ReadFile(m.CrashClone(CrashOptions{}), "/d/a"); string(got) != "durable" {
		t.Fatalf("truncate not undone: %q", got)
	}
	must(t, f.Sync())
	if got, _ := ReadFile(m.CrashClone(CrashOptions{}), "/d/a"); string(got) != "du" {
		t.Fatalf("synced truncate lost: %q", got)
	}
}

func TestMemCrashTornPrefix(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	m := NewMem()
	f, err := m.Create("/f")
	must(t, err)
	must(t, m.SyncDir("/"))
	write(t, f, "0123")
	must(t, f.Sync())
	write(t, f, "456789")
	seen := map[string]bool{}
	for range 200 {
		got, err := ReadFile(m.CrashClone(CrashOptions{Rand: rng}), "/f")
		must(t, err)
		if !bytes.HasPrefix([]byte("0123456789"), got) || len(got) < 4 {
			t.Fatalf("torn contents %q are not a prefix extending the synced data", got)
		}
		seen[string(got)] = true
	}
	if len(seen) < 3 {
		t.Fatalf("only %d distinct torn states in 200 crashes", len(seen))
	}
}

func TestFaultRules(t *testing.T) {
	m := NewMem()
	ff := NewFaultFS(m)
	f, err := ff.Create("/wal.log")
	must(t, err)

	ff.FailNth(OpSync, 2, syscall.ENOSPC)
	must(t, f.Sync())
	err = f.Sync()
	var pe *os.PathError
	if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &pe) || pe.Op != "sync" || pe.Path != "/wal.log" {
		t.Fatalf("2nd sync: %v", err)
	}
	must(t, f.Sync()) // fails once only

	ff.SetShortWrites(true)
	ff.FailAll(OpWrite, syscall.ENOSPC)
	n, err := f.Write([]byte("abcd"))
	if n != 2 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("short write = %d, %v", n, err)
	}
	if _, err := f.WriteAt([]byte("xy"), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt = %v", err)
	}
	ff.Reset()
	if _, err := f.Write([]byte("ef")); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadFile(m, "/wal.log"); string(got) != "xbef" {
		// "ab" from the short write, then WriteAt wrote "x" (half of "xy"), then "ef".
		t.Fatalf("contents %q", got)
	}

	ff.Inject(Rule{Ops: OpRename, PathContains: "snap", Times: 1})
	must(t, ff.Rename("/wal.log", "/wal2.log"))
	if err := ff.Rename("/wal2.log", "/snap"); !errors.Is(err, ErrInjected) {
		t.Fatalf("rename: %v", err)
	}
	if ff.Failures() != 4 {
		t.Fatalf("failures = %d", ff.Failures())
	}
	if s := (OpWrite | OpSync).String(); s != "write|sync" {
		t.Fatalf("Op.String = %q", s)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, f File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}
