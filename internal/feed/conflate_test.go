package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fleetd/fleetd/internal/fleet"
)

// collectSSE reads events from r into a slice until the context ends.
func collectSSE(t *testing.T, r *sseReader) (get func() []event) {
	var mu sync.Mutex
	var evs []event
	go func() {
		for {
			ev, c, err := r.next(t)
			if err != nil {
				return
			}
			if c == "" {
				mu.Lock()
				evs = append(evs, ev)
				mu.Unlock()
			}
		}
	}()
	return func() []event {
		mu.Lock()
		defer mu.Unlock()
		return append([]event(nil), evs...)
	}
}

// TestConflation: a wide subscriber (no bbox, or a huge one) gets each
// truck's newest position, never more often than max_hz a truck, however
// many updates are published; a narrow one (small bbox) keeps getting
// every update; an expired truck does not come back in a later frame.
func TestConflation(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 5))
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, wideR := dialSSE(t, ctx, ts, "max_hz=5")
	defer resp.Body.Close()
	resp2, hugeR := dialSSE(t, ctx, ts, "bbox=-170,-80,170,80&max_hz=5") // over 1024 cells: wide, filtered
	defer resp2.Body.Close()
	resp3, narrowR := dialSSE(t, ctx, ts, "bbox=0,0,1,1")
	defer resp3.Body.Close()
	wide, huge, narrow := collectSSE(t, wideR), collectSSE(t, hugeR), collectSSE(t, narrowR)
	if st := ts.h.Stats(); st.WideSubscribers != 2 || st.Subscribers != 3 {
		t.Fatalf("stats %+v", st)
	}
	const trucks = 200
	newest := map[string]fleet.Position{}
	inNarrow := 0
	start := time.Now()
	for round := range 40 {
		ups := make([]fleet.Update, trucks)
		for i := range ups {
			lat, lon := r.Float64()*170-85, r.Float64()*360-180
			if i%20 == 0 {
				lat, lon = r.Float64(), r.Float64() // some in the narrow box
			}
			if i == 7 {
				lat, lon = 1, 179.5 // outside the huge box
			}
			p := fleet.MakePosition(lat, lon, 1_764_000_000+int64(round), 50, 90)
			ups[i] = fleet.Update{ID: fmt.Appendf(nil, "t%03d", i), Position: p}
			newest[string(ups[i].ID)] = p
			if p.Lat >= 0 && p.Lat <= 1e7 && p.Lon >= 0 && p.Lon <= 1e7 {
				inNarrow++
			}
		}
		ts.h.PublishPositions(ups)
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	// t005 expires now, at its last position: no frame brings it back.
	gone := newest["t005"]
	ts.h.PublishExpired([]byte("t005"), gone.Lat, gone.Lon, gone.TS)
	delete(newest, "t005")
	wantLast := func(get func() []event, what string, want func(id string) bool) {
		t.Helper()
		waitFor(t, 5*time.Second, what+" to get every truck's newest position", func() bool {
			last := map[string]uint32{}
			for _, ev := range get() {
				if ev.Type == "position" {
					last[ev.ID] = ev.TS
				}
			}
			for id, p := range newest {
				if want(id) && last[id] != p.TS {
					return false
				}
			}
			return true
		})
	}
	wantLast(wide, "the wide subscriber", func(string) bool { return true })
	inHuge := func(id string) bool {
		p := newest[id]
		return p.LatDeg() >= -80 && p.LatDeg() <= 80 && p.LonDeg() >= -170 && p.LonDeg() <= 170
	}
	wantLast(huge, "the huge-box subscriber", inHuge)
	time.Sleep(300 * time.Millisecond) // a frame or two more
	for _, c := range []struct {
		what string
		evs  []event
	}{{"wide", wide()}, {"huge", huge()}} {
		perTruck := map[string]int{}
		expired := false
		for _, ev := range c.evs {
			switch ev.Type {
			case "position":
				perTruck[ev.ID]++
				if ev.ID == "t005" && expired {
					t.Errorf("%s: t005 came back after its expiry", c.what)
				}
				if c.what == "huge" && (ev.Lat < -80 || ev.Lat > 80 || ev.Lon < -170 || ev.Lon > 170) {
					t.Errorf("huge: got %s at %v,%v, outside the box", ev.ID, ev.Lat, ev.Lon)
				}
			case "expired":
				expired = expired || ev.ID == "t005"
			}
		}
		goneInHuge := gone.LatDeg() >= -80 && gone.LatDeg() <= 80 && gone.LonDeg() >= -170 && gone.LonDeg() <= 170
		if !expired && (c.what == "wide" || goneInHuge) {
			t.Errorf("%s: no expiry of t005", c.what)
		}
		// At most 5 a second a truck (frames of 200 ms), plus one for the
		// frame in progress at each end.
		limit := int(elapsed.Seconds()*5) + 3
		for id, n := range perTruck {
			if n > limit {
				t.Errorf("%s: %s got %d positions in %v (max_hz=5)", c.what, id, n, elapsed)
			}
		}
		t.Logf("%s: %d events for %d trucks × 40 updates", c.what, len(c.evs), trucks)
	}
	if n := len(narrow()); n < inNarrow {
		waitFor(t, 2*time.Second, "the narrow subscriber's events", func() bool { return len(narrow()) >= inNarrow })
	}
	if st := ts.h.Stats(); st.Frames == 0 || st.FrameTrucksDropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestConflationFrameFull: trucks beyond FrameTrucks in one period are
// refused, counted and reported to the subscriber as lag.
func TestConflationFrameFull(t *testing.T) {
	ts := newTestServer(t, Options{FrameTrucks: 10, WideHz: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, r := dialSSE(t, ctx, ts, "")
	defer resp.Body.Close()
	get := collectSSE(t, r)
	ups := make([]fleet.Update, 25)
	for i := range ups {
		ups[i] = fleet.Update{ID: fmt.Appendf(nil, "t%02d", i), Position: fleet.MakePosition(1, 1, 1_764_000_000, 1, 1)}
	}
	ts.h.PublishPositions(ups)
	waitFor(t, 3*time.Second, "a frame and its lag notice", func() bool {
		pos, lag := 0, uint64(0)
		for _, ev := range get() {
			switch ev.Type {
			case "position":
				pos++
			case "lag":
				lag += ev.Dropped
			}
		}
		return pos == 10 && lag == 15
	})
	if st := ts.h.Stats(); st.FrameTrucksDropped != 15 {
		t.Fatalf("stats %+v", st)
	}
}

// TestConflationOff: with WideHz < 0 an unfiltered subscriber gets every
// update, as before conflation.
func TestConflationOff(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, r := dialSSE(t, ctx, ts, "")
	defer resp.Body.Close()
	get := collectSSE(t, r)
	for k := range 5 {
		ts.h.PublishPositions([]fleet.Update{{ID: []byte("t1"), Position: fleet.MakePosition(1, 1, 1_764_000_000+int64(k), 1, 1)}})
	}
	waitFor(t, 3*time.Second, "five positions", func() bool { return len(get()) == 5 })
	if st := ts.h.Stats(); st.WideSubscribers != 0 || st.Frames != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestNewOptionsWide: WideHz and FrameTrucks are checked.
func TestNewOptionsWide(t *testing.T) {
	for _, o := range []Options{{WideHz: 11}, {FrameTrucks: -1}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// TestConflationWS: a wide WebSocket subscriber gets frames as JSON
// arrays (the shared framing), each truck's newest position.
func TestConflationWS(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.wsURL(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	waitFor(t, 2*time.Second, "the subscription", func() bool { return ts.h.Stats().WideSubscribers == 1 })
	var ups []fleet.Update
	for k := range 3 {
		for i := range 600 { // over one 16 KiB message
			ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "truck-%04d", i), Position: fleet.MakePosition(1, 2, 1_764_000_000+int64(k), 3, 4)})
		}
	}
	ts.h.PublishPositions(ups)
	last := map[string]uint32{}
	msgs := 0
	for len(last) < 600 {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages, %d trucks: %v", msgs, len(last), err)
		}
		msgs++
		var evs []event
		if err := json.Unmarshal(data, &evs); err != nil {
			t.Fatalf("message %q: %v", data, err)
		}
		for _, ev := range evs {
			if ev.Type == "position" {
				if _, dup := last[ev.ID]; dup {
					t.Fatalf("%s twice", ev.ID)
				}
				last[ev.ID] = ev.TS
			}
		}
	}
	for id, ts := range last {
		if ts != 1_764_000_002 {
			t.Fatalf("%s: ts %d, want the newest", id, ts)
		}
	}
	if msgs < 2 {
		t.Fatalf("%d messages for 600 positions", msgs)
	}
}
