package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/vfs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rec is a record as Replay delivers it.
type rec struct {
	lsn     LSN
	typ     byte
	payload []byte
}

func replayAll(t testing.TB, l *Log, from LSN) []rec {
	t.Helper()
	var out []rec
	err := l.Replay(from, func(lsn LSN, typ byte, p []byte) error {
		out = append(out, rec{lsn, typ, slices.Clone(p)})
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", from, err)
	}
	return out
}

func mustOpen(t testing.TB, fsys vfs.FS, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(fsys, dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustClose(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func payloadFor(i int) []byte { return fmt.Appendf(nil, "record-%d-%s", i, strings.Repeat("x", i%50)) }

func TestLogRoundTrip(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval(time.Millisecond), FsyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			fsys := vfs.NewMem()
			l := mustOpen(t, fsys, "/db/wal", Options{Fsync: policy, SegmentSize: 300})
			for i := range 100 {
				lsn, err := l.AppendRecord(byte(1+i%3), payloadFor(i))
				if err != nil {
					t.Fatal(err)
				}
				if lsn != LSN(i+1) {
					t.Fatalf("append %d got LSN %d", i, lsn)
				}
			}
			if st := l.Stats(); st.Segments < 5 || st.NextLSN != 101 || st.Records != 100 {
				t.Fatalf("stats %+v", st)
			}
			check := func(l *Log) {
				got := replayAll(t, l, 0)
				if len(got) != 100 {
					t.Fatalf("replayed %d records", len(got))
				}
				for i, r := range got {
					if r.lsn != LSN(i+1) || r.typ != byte(1+i%3) || !bytes.Equal(r.payload, payloadFor(i)) {
						t.Fatalf("record %d = %+v", i, r)
					}
				}
				from := replayAll(t, l, 42)
				if len(from) != 59 || from[0].lsn != 42 {
					t.Fatalf("Replay(42) gave %d records starting at %d", len(from), from[0].lsn)
				}
			}
			check(l)
			mustClose(t, l)
			if _, err := l.Append(nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close = %v", err)
			}
			if err := l.Close(); !errors.Is(err, ErrClosed) {
				t.Fatalf("second Close = %v", err)
			}
			// Everything survives a power cut after Close, in every mode.
			l = mustOpen(t, fsys.CrashClone(vfs.CrashOptions{}), "/db/wal", Options{Fsync: policy, SegmentSize: 300})
			check(l)
			lsn, err := l.Append([]byte("after reopen"))
			if err != nil || lsn != 101 {
				t.Fatalf("append after reopen = %d, %v", lsn, err)
			}
			mustClose(t, l)
		})
	}
}

func TestLogSegmentNames(t *testing.T) {
	fsys := vfs.NewMem()
	l := mustOpen(t, fsys, "/w", Options{SegmentSize: 1})
	for i := range 3 {
		if _, err := l.Append(payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, l)
	names, _ := fsys.List("/w")
	want := []string{"wal-00000000000000000001.log", "wal-00000000000000000002.log", "wal-00000000000000000003.log", "wal-00000000000000000004.log"}
	if !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	for _, tt := range []struct {
		name string
		lsn  LSN
		ok   bool
	}{
		{"wal-00000000000000000001.log", 1, true},
		{"/a/b/wal-18446744073709551615.log", 18446744073709551615, true},
		{"wal-00000000000000000000.log", 0, false},
		{"wal-0000000000000000001.log", 0, false},
		{"wal-0000000000000000000a.log", 0, false},
		{"wal-00000000000000000001.lo", 0, false},
		{"snap-00000000000000000001.log", 0, false},
	} {
		if lsn, ok := parseSegmentName(tt.name); lsn != tt.lsn || ok != tt.ok {
			t.Errorf("parseSegmentName(%q) = %d, %v", tt.name, lsn, ok)
		}
	}
}

func TestParseFsync(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want FsyncPolicy
		err  bool
	}{
		{"always", FsyncAlways, false},
		{" never ", FsyncNever, false},
		{"interval=10ms", FsyncInterval(10 * time.Millisecond), false},
		{"interval=1s", FsyncInterval(time.Second), false},
		{"interval=0s", FsyncPolicy{}, true},
		{"interval=-1ms", FsyncPolicy{}, true},
		{"interval=fast", FsyncPolicy{}, true},
		{"sometimes", FsyncPolicy{}, true},
		{"", FsyncPolicy{}, true},
	} {
		got, err := ParseFsync(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseFsync(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil {
			if back, _ := ParseFsync(got.String()); back != got {
				t.Errorf("String round trip of %v gave %v", got, back)
			}
		}
	}
	if FsyncInterval(5*time.Millisecond).Interval() != 5*time.Millisecond || FsyncAlways.Interval() != 0 {
		t.Error("Interval()")
	}
	if _, err := Open(vfs.NewMem(), "/w", Options{Fsync: FsyncInterval(0)}); err == nil {
		t.Error("Open accepted a zero interval")
	}
}

func TestAppendErrors(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), "/w", Options{})
	defer mustClose(t, l)
	if _, err := l.AppendRecord(0, nil); err == nil {
		t.Error("type 0 accepted")
	}
	if _, err := l.Append(make([]byte, MaxPayload+1)); err == nil {
		t.Error("oversized payload accepted")
	}
	if lsn, err := l.Append(nil); err != nil || lsn != 1 {
		t.Errorf("empty payload: %d, %v", lsn, err)
	}
}

// TestGroupCommitConcurrent: many goroutines append; every acknowledged
// LSN is readable after Close/Open with its payload, in LSN order, and
// LSNs are dense. Run with -race.
func TestGroupCommitConcurrent(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval(time.Millisecond)} {
		t.Run(policy.String(), func(t *testing.T) {
			fsys := vfs.NewMem()
			l := mustOpen(t, fsys, "/w", Options{Fsync: policy, SegmentSize: 8 << 10, MaxPending: 4 << 10})
			const workers, each = 16, 150
			acked := make([][]LSN, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						lsn, err := l.Append(fmt.Appendf(nil, "w%d-i%d", w, i))
						if err != nil {
							t.Error(err)
							return
						}
						acked[w] = append(acked[w], lsn)
					}
				})
			}
			wg.Wait()
			st := l.Stats()
			mustClose(t, l)
			if st.Groups >= workers*each {
				t.Logf("no grouping happened (%d groups for %d records)", st.Groups, st.Records)
			}
			l = mustOpen(t, fsys.CrashClone(vfs.CrashOptions{}), "/w", Options{})
			defer mustClose(t, l)
			got := replayAll(t, l, 0)
			if len(got) != workers*each {
				t.Fatalf("replayed %d records, want %d", len(got), workers*each)
			}
			for i, r := range got {
				if r.lsn != LSN(i+1) {
					t.Fatalf("record %d has LSN %d", i, r.lsn)
				}
			}
			for w := range workers {
				for i, lsn := range acked[w] {
					if want := fmt.Sprintf("w%d-i%d", w, i); string(got[lsn-1].payload) != want {
						t.Fatalf("LSN %d holds %q, want %q", lsn, got[lsn-1].payload, want)
					}
					if i > 0 && lsn <= acked[w][i-1] {
						t.Fatalf("worker %d: LSNs not increasing", w)
					}
				}
			}
		})
	}
}

func TestTruncateBefore(t *testing.T) {
	fsys := vfs.NewMem()
	l := mustOpen(t, fsys, "/w", Options{SegmentSize: 100})
	for i := range 40 {
		if _, err := l.Append(payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	before := l.Stats().Segments
	if err := l.TruncateBefore(20); err != nil {
		t.Fatal(err)
	}
	first := l.FirstLSN()
	if first > 20 || l.Stats().Segments >= before {
		t.Fatalf("FirstLSN %d, segments %d -> %d", first, before, l.Stats().Segments)
	}
	if err := l.Replay(1, func(LSN, byte, []byte) error { return nil }); err == nil {
		t.Fatal("Replay below FirstLSN succeeded")
	}
	if got := replayAll(t, l, 20); len(got) != 21 || got[0].lsn != 20 {
		t.Fatalf("Replay(20) = %d records", len(got))
	}
	// Everything: only the active segment remains.
	if err := l.TruncateBefore(1000); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Segments != 1 {
		t.Fatalf("%d segments left", st.Segments)
	}
	mustClose(t, l)
	l = mustOpen(t, fsys.CrashClone(vfs.CrashOptions{}), "/w", Options{})
	defer mustClose(t, l)
	// The active segment may be empty (rotation follows a full group).
	if got := replayAll(t, l, 0); len(got) > 0 && got[len(got)-1].lsn != 40 {
		t.Fatalf("after reopen: last LSN %d", got[len(got)-1].lsn)
	}
	if l.NextLSN() != 41 || l.FirstLSN() > 41 {
		t.Fatalf("FirstLSN %d NextLSN %d", l.FirstLSN(), l.NextLSN())
	}
}

// TestSync: under FsyncInterval and FsyncNever, what Sync returned for
// survives a power cut; what was appended after it need not.
func TestSync(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncInterval(time.Hour), FsyncNever, FsyncAlways} {
		fsys := vfs.NewMem()
		l := mustOpen(t, fsys, "/w", Options{Fsync: policy})
		for i := range 10 {
			if _, err := l.Append([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		crashed := fsys.CrashClone(vfs.CrashOptions{})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); !errors.Is(err, ErrClosed) {
			t.Fatalf("%v: Sync after Close: %v, want ErrClosed", policy, err)
		}
		l = mustOpen(t, crashed, "/w", Options{Fsync: policy})
		if got := l.NextLSN(); got != 11 {
			t.Errorf("%v: after the crash the log ends before LSN %d, want 11", policy, got)
		}
		l.Close()
	}
}

func TestStartLSN(t *testing.T) {
	fsys := vfs.NewMem()
	l := mustOpen(t, fsys, "/w", Options{StartLSN: 1000})
	if lsn, err := l.Append([]byte("x")); err != nil || lsn != 1000 {
		t.Fatalf("first LSN = %d, %v", lsn, err)
	}
	mustClose(t, l)
	l = mustOpen(t, fsys, "/w", Options{StartLSN: 5})
	defer mustClose(t, l)
	if l.FirstLSN() != 1000 || l.NextLSN() != 1001 {
		t.Fatalf("FirstLSN %d NextLSN %d", l.FirstLSN(), l.NextLSN())
	}
}

func TestReplayCallbackError(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), "/w", Options{})
	defer mustClose(t, l)
	for i := range 5 {
		l.Append(payloadFor(i))
	}
	stop := errors.New("stop")
	n := 0
	err := l.Replay(0, func(LSN, byte, []byte) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("Replay = %v after %d records", err, n)
	}
}

// TestAppendUpdatesThroughLog checks the codec and the log together.
func TestAppendUpdatesThroughLog(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 9))
	fsys := vfs.NewMem()
	l := mustOpen(t, fsys, "/w", Options{})
	var want []Entry
	var buf []byte
	for range 20 {
		es := randomEntries(rng, 1+rng.IntN(500))
		want = append(want, normalize(es)...)
		buf = AppendUpdates(buf[:0], es)
		if _, err := l.Append(buf); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, l)
	l = mustOpen(t, fsys, "/w", Options{})
	defer mustClose(t, l)
	var got []Entry
	err := l.Replay(0, func(_ LSN, typ byte, p []byte) error {
		if typ != TypeUpdates {
			return fmt.Errorf("type %d", typ)
		}
		return DecodeUpdates(p, func(e *Entry) { got = append(got, cloneEntry(e)) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if !entriesEqual(got, want) {
		t.Fatalf("entries differ after replay (%d vs %d)", len(got), len(want))
	}
}

func TestOpenRealDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	l := mustOpen(t, vfs.Default, dir, Options{SegmentSize: 64})
	for i := range 10 {
		if _, err := l.Append(payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, l)
	l = mustOpen(t, vfs.Default, dir, Options{})
	defer mustClose(t, l)
	if got := replayAll(t, l, 0); len(got) != 10 {
		t.Fatalf("%d records", len(got))
	}
}

// TestReplayDuringAppend: Replay sees a consistent prefix while appends
// and rotations continue (run with -race).
func TestReplayDuringAppend(t *testing.T) {
	fsys := vfs.NewMem()
	l := mustOpen(t, fsys, "/w", Options{SegmentSize: 512})
	defer mustClose(t, l)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 2000 {
			if _, err := l.Append(payloadFor(i)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 20 {
		got := replayAll(t, l, 0)
		for i, r := range got {
			if r.lsn != LSN(i+1) || !bytes.Equal(r.payload, payloadFor(i)) {
				t.Fatalf("record %d = %+v", i, r)
			}
		}
	}
	wg.Wait()
}

// TestAppendRecords checks that a call's records land in order, as one
// group when they fit (one fsync under FsyncAlways), and across groups,
// interleaved with other writers, when MaxPending splits them.
func TestAppendRecords(t *testing.T) {
	t.Run("one group", func(t *testing.T) {
		fsys := vfs.NewMem()
		l := mustOpen(t, fsys, "/w", Options{Fsync: FsyncAlways})
		defer mustClose(t, l)
		if _, err := l.Append([]byte("first")); err != nil {
			t.Fatal(err)
		}
		before := l.Stats()
		ps := [][]byte{[]byte("a"), []byte("bb"), []byte("ccc"), payloadFor(40)}
		last, err := l.AppendRecords(TypeUpdates, ps)
		if err != nil {
			t.Fatal(err)
		}
		after := l.Stats()
		if g, s := after.Groups-before.Groups, after.Syncs-before.Syncs; g != 1 || s != 1 {
			t.Fatalf("%d records took %d groups and %d fsyncs, want 1 and 1", len(ps), g, s)
		}
		if last != 5 {
			t.Fatalf("last LSN %d, want 5", last)
		}
		got := replayAll(t, l, 2)
		for i, r := range got {
			if !bytes.Equal(r.payload, ps[i]) || r.typ != TypeUpdates {
				t.Fatalf("record %d = %q type %d, want %q", i, r.payload, r.typ, ps[i])
			}
		}
		if _, err := l.AppendRecords(0, ps); err == nil {
			t.Fatal("type 0 accepted")
		}
		if _, err := l.AppendRecords(TypeUpdates, nil); err == nil {
			t.Fatal("no records accepted")
		}
	})
	t.Run("split and concurrent", func(t *testing.T) {
		seed := time.Now().UnixNano()
		t.Logf("seed %d", seed)
		g := rand.New(rand.NewPCG(uint64(seed), 1))
		fsys := vfs.NewMem()
		l := mustOpen(t, fsys, "/w", Options{Fsync: FsyncAlways, SegmentSize: 16 << 10, MaxPending: 2 << 10})
		const workers, calls = 8, 60
		type call struct {
			last LSN
			ps   [][]byte
		}
		done := make([][]call, workers)
		sizes := make([][]int, workers)
		for w := range workers {
			for range calls {
				sizes[w] = append(sizes[w], 1+g.IntN(12))
			}
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for c, n := range sizes[w] {
					var ps [][]byte
					for i := range n {
						ps = append(ps, fmt.Appendf(nil, "w%d-c%d-r%d-%s", w, c, i, strings.Repeat("y", (w*31+c*7+i)%400)))
					}
					last, err := l.AppendRecords(TypeUpdates, ps)
					if err != nil {
						t.Error(err)
						return
					}
					done[w] = append(done[w], call{last, ps})
				}
			})
		}
		wg.Wait()
		mustClose(t, l)
		l = mustOpen(t, fsys.CrashClone(vfs.CrashOptions{}), "/w", Options{})
		defer mustClose(t, l)
		got := replayAll(t, l, 0)
		at := make(map[string]LSN, len(got))
		for _, r := range got {
			at[string(r.payload)] = r.lsn
		}
		total := 0
		for w := range workers {
			for _, c := range done[w] {
				total += len(c.ps)
				prev := LSN(0)
				for _, p := range c.ps {
					lsn, ok := at[string(p)]
					if !ok {
						t.Fatalf("acknowledged record %q lost", p)
					}
					if lsn <= prev {
						t.Fatalf("record %q at LSN %d, not after %d", p, lsn, prev)
					}
					prev = lsn
				}
				if prev != c.last {
					t.Fatalf("call returned LSN %d, its last record is at %d", c.last, prev)
				}
			}
		}
		if len(got) != total {
			t.Fatalf("replayed %d records, appended %d", len(got), total)
		}
	})
}
