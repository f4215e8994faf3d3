package feed

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewOptions(t *testing.T) {
	tests := []struct {
		o       Options
		wantErr string
		check   func(h *Hub) bool
	}{
		{Options{}, "", func(h *Hub) bool {
			o := h.Options()
			return o.MaxSubscribers == 1000 && o.Buffer == 4096 && o.Stall == 30*time.Second &&
				o.Heartbeat == 15*time.Second && o.FlushInterval == 50*time.Millisecond &&
				h.posMax == 4096 && h.posBytes == 4096*94 && h.ctlMax == 256
		}},
		{Options{Buffer: 1000}, "", func(h *Hub) bool { return h.posMax == 1024 && h.posBytes == 1024*94 && h.ctlMax == 64 }},
		// The byte limit holds at least the longest position.
		{Options{Buffer: 1}, "", func(h *Hub) bool { return h.posMax == 1 && h.posBytes == maxPosPayload && h.ctlMax == 16 }},
		{Options{Buffer: -1}, "feed: option Buffer is negative (-1)", nil},
		{Options{Stall: -time.Second}, "feed: option Stall is negative", nil},
		{Options{Buffer: maxBuffer + 1}, "feed: Buffer 1048577 is more than 1048576", nil},
		{Options{MaxSubscribers: maxSubscribersLimit + 1}, "feed: MaxSubscribers", nil},
	}
	for _, tt := range tests {
		h, err := New(tt.o)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("New(%+v) error %v, want %q", tt.o, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%+v): %v", tt.o, err)
			continue
		}
		if !tt.check(h) {
			t.Errorf("New(%+v): options %+v, rings %d/%d", tt.o, h.Options(), h.posMax, h.ctlMax)
		}
		h.Close()
	}
}

// TestSnapshotRouting checks which routing list each kind of filter lands
// in, and that slots are reused and the tables shrink when subscribers go.
func TestSnapshotRouting(t *testing.T) {
	h, _ := New(Options{})
	defer h.Close()
	sub := func(q string) *subscriber {
		f, err := parseFilter(q)
		if err != nil {
			t.Fatal(err)
		}
		s, err := h.subscribe(&f)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	small := sub("bbox=-74,40,-73,41")       // 4 cells → grid
	world := sub("bbox=-180,-90,180,90")     // everywhere, with a box check
	none := sub("")                          // everywhere
	ids := sub("ids=a,b&bbox=-74,40,-73,41") // by ID only
	alerts := sub("types=alert")             // no positions: everywhere for alerts
	sn := h.snap.Load()
	if got := small.m.boxCells(nil); got != 4 {
		t.Errorf("small box covers %d cells, want 4", got)
	}
	if len(sn.cellSubs) != 4 || sn.cellSubs[0] != small.slot {
		t.Errorf("grid lists %v", sn.cellSubs)
	}
	// The cell table covers only the grid subscribers' cells.
	if got := sn.win.cells(); got != 4 || len(sn.cellStart) != 5 {
		t.Errorf("cell window %+v (%d cells), table of %d", sn.win, got, len(sn.cellStart))
	}
	if got := sn.gridSubs(40.5e7, -73.5e7); !slices.Equal(got, []uint32{small.slot}) {
		t.Errorf("cell of a point in the box lists %v", got)
	}
	if got := sn.gridSubs(42.5e7, -73.5e7); got != nil {
		t.Errorf("a point above the window lists %v", got)
	}
	// A box across the antimeridian widens the window to the whole width.
	seam := sub("bbox=179.5,-1,-179.5,1")
	sn2 := h.snap.Load()
	if sn2.win != (cellRect{la0: 89, la1: 131, lo0: 0, lo1: grid.Cols - 1}) {
		t.Errorf("window with a seam box: %+v", sn2.win)
	}
	for _, lon := range []int32{179.9e7, -179.9e7} {
		if got := sn2.gridSubs(0, lon); !slices.Contains(got, seam.slot) {
			t.Errorf("lon %d: cell lists %v, want the seam box", lon, got)
		}
	}
	h.unsubscribe(seam)
	if want := []uint32{world.slot, none.slot, alerts.slot}; !slices.Equal(sn.every, want) {
		t.Errorf("every %v, want %v", sn.every, want)
	}
	if len(sn.byID) != 2 || !slices.Equal(sn.byID["a"], []uint32{ids.slot}) {
		t.Errorf("byID %v", sn.byID)
	}
	h.unsubscribe(world)
	again := sub("")
	if again.slot != world.slot {
		t.Errorf("slot %d not reused (got %d)", world.slot, again.slot)
	}
	for _, s := range []*subscriber{alerts, again, ids, none} {
		h.unsubscribe(s)
	}
	if sn := h.snap.Load(); len(sn.subs) != 1 || sn.byID != nil || len(h.mu.byID) != 0 {
		t.Errorf("after unsubscribes: %d slots, byID %v, master %v", len(sn.subs), sn.byID, h.mu.byID)
	}
	h.unsubscribe(small)
	if h.snap.Load() != nil || len(h.mu.subs) != 0 || len(h.mu.free) != 0 {
		t.Errorf("empty hub keeps %d slots, %d free", len(h.mu.subs), len(h.mu.free))
	}
}
