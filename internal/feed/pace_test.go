package feed

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// TestPacerReserve: a burst's worth goes at once, then each write waits
// for its bytes' share of the rate after every earlier reservation; idle
// time refills at most one burst.
func TestPacerReserve(t *testing.T) {
	pc := newPacer(1000) // 1 ms a byte; burst 100 ms = 100 bytes
	ms := int64(time.Millisecond)
	for i, c := range []struct {
		now  int64 // ms
		n    int
		want time.Duration
	}{
		{0, 60, 0},                        // within the burst
		{0, 40, 0},                        // the burst's end
		{0, 50, 50 * time.Millisecond},    // past it: waits for its bytes
		{0, 10, 60 * time.Millisecond},    // after the previous reservation
		{100, 10, 0},                      // time passed: back within the burst
		{100, 40, 10 * time.Millisecond},  // and past it again
		{10_000, 100, 0},                  // long idle: one burst again...
		{10_000, 1, 1 * time.Millisecond}, // ...not more
	} {
		if got := pc.reserve(c.now*ms, c.n); got != c.want {
			t.Errorf("%d: reserve(%d ms, %d) = %v, want %v", i, c.now, c.n, got, c.want)
		}
	}
}

// TestNewOptionsWideBytes: the budget's default is per core; negative
// turns it off.
func TestNewOptionsWideBytes(t *testing.T) {
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Options().WideBytesPerSec != defaultWideBytes() || h.pace == nil {
		t.Errorf("default budget %d, pacer %v", h.Options().WideBytesPerSec, h.pace)
	}
	h, err = New(Options{WideBytesPerSec: -1})
	if err != nil || h.pace != nil {
		t.Errorf("WideBytesPerSec -1: %v, pacer %v", err, h.pace)
	}
}

// TestConflationBudget: with a byte budget smaller than the frames need,
// wide subscribers get fewer, fuller frames (each truck's newest, no
// frame skipped, so no lag), the bytes written stay near the budget, and
// each ends with every truck's newest position.
func TestConflationBudget(t *testing.T) {
	const rate = 40_000 // B/s; two subscribers of 100-truck frames (~11 KB): ~0.55 s a frame
	ts := newTestServer(t, Options{WideHz: 10, WideBytesPerSec: rate})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var gets []func() []event
	for range 2 {
		resp, r := dialSSE(t, ctx, ts, "")
		defer resp.Body.Close()
		gets = append(gets, collectSSE(t, r))
	}
	waitFor(t, 2*time.Second, "the subscriptions", func() bool { return ts.h.Stats().WideSubscribers == 2 })
	const trucks = 100
	start := time.Now()
	var last uint32
	for round := 0; time.Since(start) < 2*time.Second; round++ {
		ups := make([]fleet.Update, trucks)
		last = uint32(1_764_000_000 + round)
		for i := range ups {
			ups[i] = fleet.Update{ID: fmt.Appendf(nil, "truck-%07d", i), Position: fleet.MakePosition(40.1234567, -74.1234567, int64(last), 50, 90)}
		}
		ts.h.PublishPositions(ups)
		time.Sleep(20 * time.Millisecond)
	}
	published := time.Since(start)
	frames := ts.h.Stats().Frames
	for k, get := range gets {
		waitFor(t, 10*time.Second, fmt.Sprintf("subscriber %d to get the newest positions", k), func() bool {
			newest := map[string]uint32{}
			for _, ev := range get() {
				if ev.Type == "position" {
					newest[ev.ID] = ev.TS
				}
			}
			for i := range trucks {
				if newest[fmt.Sprintf("truck-%07d", i)] != last {
					return false
				}
			}
			return true
		})
		for _, ev := range get() {
			if ev.Type == "lag" {
				t.Errorf("subscriber %d: lag %d: a frame was skipped", k, ev.Dropped)
			}
		}
	}
	elapsed := time.Since(start)
	st := ts.h.Stats()
	// 20 frames at 10 Hz without the budget; about 4 with it.
	if frames < 1 || frames > 8 {
		t.Errorf("%d frames in %v of publishing", frames, published)
	}
	if perSec := float64(st.FrameBytes) / elapsed.Seconds(); perSec > 1.5*rate {
		t.Errorf("%.0f B/s of frames, budget %d", perSec, rate)
	}
	if st.FramePaceWaits == 0 {
		t.Errorf("no paced write: %+v", st)
	}
	t.Logf("%d frames while publishing for %v, %d B in %v, %d paced writes", frames, published, st.FrameBytes, elapsed, st.FramePaceWaits)
}
