package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/vfs"
)

// ackLog records acknowledged appends and checks them after a crash.
type ackLog struct {
	mu    sync.Mutex
	acked map[LSN][]byte
}

func (a *ackLog) add(lsn LSN, p []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.acked == nil {
		a.acked = map[LSN][]byte{}
	}
	if _, dup := a.acked[lsn]; dup {
		panic(fmt.Sprintf("LSN %d acknowledged twice", lsn))
	}
	a.acked[lsn] = p
}

func (a *ackLog) snapshot() map[LSN][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[LSN][]byte, len(a.acked))
	for k, v := range a.acked {
		m[k] = v
	}
	return m
}

// verify opens the log on fsys and checks that every acknowledged record
// is there with its payload, and that LSNs are dense.
func verify(t *testing.T, fsys vfs.FS, dir string, acked map[LSN][]byte) []rec {
	t.Helper()
	l, err := Open(fsys, dir, Options{})
	if err != nil {
		t.Fatalf("Open after crash: %v", err)
	}
	defer mustClose(t, l)
	got := replayAll(t, l, 0)
	byLSN := map[LSN][]byte{}
	for i, r := range got {
		if i > 0 && r.lsn != got[i-1].lsn+1 {
			t.Fatalf("LSN gap %d -> %d", got[i-1].lsn, r.lsn)
		}
		byLSN[r.lsn] = r.payload
	}
	for lsn, p := range acked {
		if q, ok := byLSN[lsn]; !ok || !bytes.Equal(p, q) {
			t.Fatalf("acknowledged LSN %d lost or changed (have %q, want %q)", lsn, q, p)
		}
	}
	return got
}

func TestENOSPC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ops    vfs.Op
		policy FsyncPolicy
		want   string
	}{
		{"write/always", vfs.OpWrite, FsyncAlways, "wal: write wal-00000000000000000001.log: no space left on device"},
		{"fsync/always", vfs.OpSync, FsyncAlways, "wal: fsync wal-00000000000000000001.log: no space left on device"},
		{"write/interval", vfs.OpWrite, FsyncInterval(time.Hour), "wal: write wal-00000000000000000001.log: no space left on device"},
		{"write/never", vfs.OpWrite, FsyncNever, "wal: write wal-00000000000000000001.log: no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			ffs := vfs.NewFaultFS(mem)
			ffs.SetShortWrites(true)
			l := mustOpen(t, ffs, "/w", Options{Fsync: tc.policy})
			var acks ackLog
			for i := range 5 {
				p := payloadFor(i)
				lsn, err := l.Append(p)
				if err != nil {
					t.Fatal(err)
				}
				acks.add(lsn, p)
			}
			ffs.FailAll(tc.ops, syscall.ENOSPC)
			for range 3 {
				_, err := l.Append([]byte("doomed"))
				if err == nil || err.Error() != tc.want || !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Append on full disk = %v, want %q", err, tc.want)
				}
			}
			ffs.Reset() // space freed
			for i := 5; i < 10; i++ {
				p := payloadFor(i)
				lsn, err := l.Append(p)
				if err != nil {
					t.Fatalf("Append after recovery: %v", err)
				}
				if lsn != LSN(i+1) {
					t.Fatalf("LSN %d after recovery, want %d (failed LSNs must be reused)", lsn, i+1)
				}
				acks.add(lsn, p)
			}
			st := l.Stats()
			if st.WriteErrors+st.SyncErrors < 3 {
				t.Fatalf("stats %+v", st)
			}
			mustClose(t, l)
			got := verify(t, mem.CrashClone(vfs.CrashOptions{}), "/w", acks.snapshot())
			if len(got) != 10 {
				t.Fatalf("%d records after crash, want exactly the 10 acknowledged", len(got))
			}
		})
	}
}

// TestENOSPCRepairFails: while the disk stays broken even the repair
// fails; appends keep failing with a clear error and resume afterwards.
func TestENOSPCRepairFails(t *testing.T) {
	mem := vfs.NewMem()
	ffs := vfs.NewFaultFS(mem)
	l := mustOpen(t, ffs, "/w", Options{})
	if _, err := l.Append([]byte("a")); err != nil {
		t.Fatal(err)
	}
	ffs.FailAll(vfs.OpSync|vfs.OpTruncate, syscall.EIO)
	for range 3 {
		if _, err := l.Append([]byte("b")); !errors.Is(err, syscall.EIO) {
			t.Fatalf("Append = %v", err)
		}
	}
	ffs.Reset()
	if lsn, err := l.Append([]byte("c")); err != nil || lsn != 2 {
		t.Fatalf("Append after recovery = %d, %v", lsn, err)
	}
	mustClose(t, l)
	got := verify(t, mem.CrashClone(vfs.CrashOptions{}), "/w", map[LSN][]byte{1: []byte("a"), 2: []byte("c")})
	if len(got) != 2 {
		t.Fatalf("%d records", len(got))
	}
}

// TestIntervalSyncFailure: a timer fsync fails in interval mode and the
// kernel drops the dirty pages (fsyncgate). The flusher must rewrite the
// acknowledged-but-unsynced bytes it retains, so nothing acknowledged is
// lost, neither in the live file nor after a later power cut.
func TestIntervalSyncFailure(t *testing.T) {
	mem := vfs.NewMem()
	ffs := vfs.NewFaultFS(mem)
	l := mustOpen(t, ffs, "/w", Options{Fsync: FsyncInterval(time.Millisecond)})
	var acks ackLog
	ffs.Inject(vfs.Rule{Ops: vfs.OpSync, Times: 2, Err: syscall.EIO,
		Hook: func(_ vfs.Op, path string) { mem.DropUnsynced(path) }})
	for i := range 40 {
		p := payloadFor(i)
		lsn, err := l.Append(p)
		if err != nil {
			t.Fatal(err)
		}
		acks.add(lsn, p)
		if i%4 == 0 {
			time.Sleep(2 * time.Millisecond) // let timer fsyncs happen
		}
	}
	if l.Stats().SyncErrors == 0 {
		t.Fatal("no fsync failed")
	}
	if got := replayAll(t, l, 0); len(got) != 40 {
		t.Fatalf("live log has %d records, want 40", len(got))
	}
	mustClose(t, l)
	verify(t, mem.CrashClone(vfs.CrashOptions{}), "/w", acks.snapshot())
}

// TestRotationFailures: a failed create or directory fsync postpones
// rotation; nothing is lost and rotation happens later.
func TestRotationFailures(t *testing.T) {
	for _, ops := range []vfs.Op{vfs.OpCreate, vfs.OpSyncDir} {
		t.Run(ops.String(), func(t *testing.T) {
			mem := vfs.NewMem()
			ffs := vfs.NewFaultFS(mem)
			l := mustOpen(t, ffs, "/w", Options{SegmentSize: 64})
			var acks ackLog
			ffs.Inject(vfs.Rule{Ops: ops | vfs.OpRemove, Times: 4, Err: syscall.ENOSPC})
			for i := range 30 {
				p := payloadFor(i)
				lsn, err := l.Append(p)
				if err != nil {
					t.Fatal(err)
				}
				acks.add(lsn, p)
			}
			st := l.Stats()
			if st.RotateFailures == 0 || st.Segments < 2 {
				t.Fatalf("stats %+v", st)
			}
			mustClose(t, l)
			if got := verify(t, mem.CrashClone(vfs.CrashOptions{}), "/w", acks.snapshot()); len(got) != 30 {
				t.Fatalf("%d records", len(got))
			}
		})
	}
}

// TestCrashLoseUnsynced: concurrent appenders under FsyncAlways with
// random injected write/fsync failures; at random moments the state a
// power cut would leave (unsynced writes dropped or torn) is captured.
// Every Append acknowledged before the capture must survive in it.
func TestCrashLoseUnsynced(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 14))
	mem := vfs.NewMem()
	ffs := vfs.NewFaultFS(mem)
	ffs.SetShortWrites(true)
	l := mustOpen(t, ffs, "/w", Options{SegmentSize: 4 << 10})

	var acks ackLog
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Appendf(nil, "w%d-%d", w, i)
				if lsn, err := l.Append(p); err == nil {
					acks.add(lsn, p)
				}
			}
		})
	}
	type crash struct {
		fs    *vfs.MemFS
		acked map[LSN][]byte
	}
	var crashes []crash
	for range 15 {
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		switch rng.IntN(3) {
		case 0:
			ffs.FailNth(vfs.OpWrite, 1+rng.IntN(3), syscall.ENOSPC)
		case 1:
			ffs.FailNth(vfs.OpSync, 1+rng.IntN(3), syscall.EIO)
		}
		// Acks taken BEFORE the clone all happened before it.
		acked := acks.snapshot()
		crashes = append(crashes, crash{mem.CrashClone(vfs.CrashOptions{Rand: rng}), acked})
	}
	close(stop)
	wg.Wait()
	ffs.Reset()
	mustClose(t, l)
	total := 0
	for _, c := range crashes {
		verify(t, c.fs, "/w", c.acked)
		total += len(c.acked)
	}
	if total == 0 {
		t.Fatal("nothing was acknowledged")
	}
	verify(t, mem.CrashClone(vfs.CrashOptions{}), "/w", acks.snapshot())
	t.Logf("%d appends acknowledged, %d injected failures", len(acks.snapshot()), ffs.Failures())
}
