package server

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/outbox"
	"github.com/fleetd/fleetd/internal/vfs"
)

// slowSinkFS makes the fsyncs of files under a sinks directory take d
// (a real disk's latency), so that an event appended to an outbox and the
// same event durable are far apart in time.
type slowSinkFS struct {
	vfs.FS
	d time.Duration
}

type slowSyncFile struct {
	vfs.File
	d time.Duration
}

func (f slowSyncFile) Sync() error { time.Sleep(f.d); return f.File.Sync() }

func (s slowSinkFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.Contains(name, "/sinks/") {
		return f, err
	}
	return slowSyncFile{f, s.d}, nil
}

func (s slowSinkFS) Create(name string) (vfs.File, error) {
	f, err := s.FS.Create(name)
	return s.wrap(name, f, err)
}

func (s slowSinkFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := s.FS.OpenFile(name, flag, perm)
	return s.wrap(name, f, err)
}

// TestSinkEventsDurableAtAck: the power is cut (CrashClone) right after
// each POST /v1/positions is answered 200; every event its updates
// caused must be in the sink's outbox in the image. The outbox's fsync
// takes 20 ms, so without the wait before the answer (alert.Options.Sync
// → sink.Dispatcher.Sync) the image lacks the newest batch's events.
func TestSinkEventsDurableAtAck(t *testing.T) {
	mem := vfs.NewMem()
	s, ts := open(t, slowSinkFS{mem, 20 * time.Millisecond})
	defer stop(t, s, ts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String() // refused: nothing is delivered, all stays in the outbox
	ln.Close()
	if code, body := do(t, "PUT", ts.URL+"/v1/rules/fast", `{"when":"speed > 50"}`); code != 200 {
		t.Fatalf("PUT rule: %d %s", code, body)
	}
	if code, body := do(t, "PUT", ts.URL+"/v1/sinks/ops", fmt.Sprintf(`{"type":"webhook","url":"http://%s/hook"}`, dead)); code != 201 {
		t.Fatalf("PUT sink: %d %s", code, body)
	}
	const trucks = 20
	for round := range 6 {
		var b strings.Builder
		for k := range trucks {
			speed := 80 - 70*(round%2) // above, below, above…: a transition each
			fmt.Fprintf(&b, `{"id":"t%02d","lat":40.1,"lon":-74.1,"ts":%d,"speed":%d}`+"\n", k, 1_764_000_000+round, speed)
		}
		if code, body := do(t, "POST", ts.URL+"/v1/positions", b.String()); code != 200 {
			t.Fatalf("POST: %d %s", code, body)
		}
		img := mem.CrashClone(vfs.CrashOptions{})
		// The sink's outbox (package sink: one a sink, read by its lanes).
		ob, err := outbox.Open(outbox.Options{FS: img, Dir: "/data/sinks/ops/outbox", Lanes: 8, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		depth := ob.Stats().Depth
		ob.Close()
		if want := int64(trucks * (round + 1)); depth != want {
			t.Fatalf("round %d: %d events durable when the POST was answered, want %d", round, depth, want)
		}
	}
}
