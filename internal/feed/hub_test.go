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
				h.posMax == 4096 && h.ctlMax == 256
		}},
		{Options{Buffer: 1000}, "", func(h *Hub) bool { return h.posMax == 1024 && h.ctlMax == 64 }},
		{Options{Buffer: 1}, "", func(h *Hub) bool { return h.posMax == 1 && h.ctlMax == 16 }},
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
	alerts := sub("types=alert")             // no positions
	sn := h.snap.Load()
	if got := small.m.boxCells(nil); got != 4 {
		t.Errorf("small box covers %d cells, want 4", got)
	}
	if len(sn.cellSubs) != 4 || sn.cellSubs[0] != small.slot {
		t.Errorf("grid lists %v", sn.cellSubs)
	}
	if want := []uint32{world.slot, none.slot}; !slices.Equal(sn.everyPos, want) {
		t.Errorf("everyPos %v, want %v", sn.everyPos, want)
	}
	if want := []uint32{small.slot, world.slot, none.slot, alerts.slot}; !slices.Equal(sn.noIDs, want) {
		t.Errorf("noIDs %v, want %v", sn.noIDs, want)
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
