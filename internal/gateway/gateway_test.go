package gateway

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/store"
)

func TestCheck(t *testing.T) {
	ok := fleet.Update{ID: []byte("t1"), Position: fleet.MakePosition(1, 2, 1000, 10, 90)}
	if err := Check(&ok, 1000, 300); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		f    func(u *fleet.Update)
		frag string
	}{
		{"id", func(u *fleet.Update) { u.ID = []byte("a b") }, "invalid id"},
		{"empty id", func(u *fleet.Update) { u.ID = nil }, "invalid id"},
		{"lat", func(u *fleet.Update) { u.Lat = 900_000_001 }, "out of range"},
		{"speed", func(u *fleet.Update) { u.Speed = fleet.MaxSpeed + 1 }, "out of range"},
		{"heading", func(u *fleet.Update) { u.Heading = 360 }, "out of range"},
		{"ts 0", func(u *fleet.Update) { u.TS = 0 }, "ts 0"},
		{"future", func(u *fleet.Update) { u.TS = 1301 }, "ahead of the server clock"},
		{"attr", func(u *fleet.Update) { u.Attrs.Set(fleet.Altitude, fleet.Altitude.Max()+1) }, "attribute"},
	} {
		u := ok
		tt.f(&u)
		err := Check(&u, 1000, 300)
		if err == nil || !strings.Contains(err.Error(), tt.frag) || !strings.HasPrefix(err.Error(), "gateway: ") {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.frag)
		}
		if tt.name == "future" && !errors.Is(err, ErrFuture) {
			t.Errorf("future: %v is not ErrFuture", err)
		}
	}
	late := ok
	late.TS = 1301
	if err := Check(&late, 1000, 0); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

type countEngine struct {
	mu      sync.Mutex
	batches []int
	gate    chan struct{}
	res     store.Result
	err     error
}

func (e *countEngine) Apply(b []fleet.Update) (store.Result, error) {
	if e.gate != nil {
		<-e.gate
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.batches = append(e.batches, len(b))
	return e.res, e.err
}

// TestCommitterMerges: while one Apply is in progress, the Commits that
// arrive are merged into the next batch, and each gets its answer only
// after the Apply that carried it.
func TestCommitterMerges(t *testing.T) {
	eng := &countEngine{gate: make(chan struct{})}
	c := NewCommitter(eng, 1, 0)
	defer c.Close()
	var done atomic.Int64
	var wg sync.WaitGroup
	for i := range 11 {
		wg.Go(func() {
			j := NewJob()
			j.Updates = make([]fleet.Update, 1+i%3)
			if err := c.Commit(j); err != nil {
				t.Error(err)
			}
			done.Add(1)
		})
		if i == 0 {
			time.Sleep(50 * time.Millisecond) // the first one is in Apply
		}
	}
	time.Sleep(100 * time.Millisecond)
	if done.Load() != 0 {
		t.Fatal("a Commit returned before its Apply")
	}
	close(eng.gate)
	wg.Wait()
	eng.mu.Lock()
	defer eng.mu.Unlock()
	total := 0
	for _, n := range eng.batches {
		total += n
	}
	if len(eng.batches) != 2 || eng.batches[0] != 1 || total != 21 { // 1, then 2+3+1+2+3+1+2+3+1+2 merged
		t.Fatalf("batches %v (total %d)", eng.batches, total)
	}
}

func TestCommitterErrors(t *testing.T) {
	eng := &countEngine{err: errors.New("disk on fire")}
	c := NewCommitter(eng, 2, 0)
	j := NewJob()
	j.Updates = make([]fleet.Update, 2)
	if err := c.Commit(j); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("engine error: %v", err)
	}
	eng.err, eng.res = nil, store.Result{Refused: 1}
	if err := c.Commit(j); !errors.Is(err, ErrRefused) {
		t.Fatalf("refused: %v", err)
	}
	if err := c.Commit(NewJob()); err != nil {
		t.Fatalf("empty job: %v", err)
	}
	c.Close()
	if err := c.Commit(j); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 {
		t.Fatal("empty")
	}
	for i := range 100 {
		h.Observe(time.Duration(i+1) * time.Millisecond)
	}
	// p50 is 50 ms: in the bucket [32.768, 65.536) ms.
	if q := h.Quantile(0.5); q != 65536*time.Microsecond {
		t.Fatalf("p50 %v", q)
	}
	if q := h.Quantile(0.99); q != 131072*time.Microsecond {
		t.Fatalf("p99 %v", q)
	}
	if h.Count() != 100 || h.Sum() != 5050*time.Millisecond {
		t.Fatalf("count %d sum %v", h.Count(), h.Sum())
	}
}
