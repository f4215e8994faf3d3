package feed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/fleetd/fleetd/internal/alert"
	"hash/maphash"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
)

// event is a decoded feed event; absent fields stay zero, so events
// compare with ==.
type event struct {
	Type    string  `json:"type"`
	ID      string  `json:"id"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	TS      uint32  `json:"ts"`
	Speed   float64 `json:"speed"`
	Heading int     `json:"heading"`
	Rule    string  `json:"rule"`
	State   string  `json:"state"`
	Dropped uint64  `json:"dropped"`
}

func posEvent(u fleet.Update) event {
	return event{Type: "position", ID: string(u.ID), Lat: geo.FromFixed(u.Lat), Lon: geo.FromFixed(u.Lon),
		TS: u.TS, Speed: float64(u.Speed) / 10, Heading: int(u.Heading)}
}

func alertEvent(a alert.Alert) event {
	return event{Type: "alert", Rule: cutUTF8(a.Rule, MaxRuleLen), ID: a.ID, State: a.State, TS: a.TS,
		Lat: geo.FromFixed(a.Lat), Lon: geo.FromFixed(a.Lon)}
}

// memSink collects what a pump writes, one batch per write.
type memSink struct{ batches [][]byte }

func (m *memSink) write(p []byte) error {
	m.batches = append(m.batches, bytes.Clone(p))
	return nil
}
func (m *memSink) flush() error { return nil }
func (m *memSink) ping() error  { return nil }

// parseSSE decodes "data: {json}\n\n" records, strictly.
func parseSSE(t testing.TB, b []byte) []event {
	t.Helper()
	var out []event
	for len(b) > 0 {
		rec, rest, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok {
			t.Fatalf("unterminated SSE record %q", b)
		}
		b = rest
		if bytes.HasPrefix(rec, []byte(":")) {
			continue // comment
		}
		data, ok := bytes.CutPrefix(rec, []byte("data: "))
		if !ok || bytes.IndexByte(data, '\n') >= 0 {
			t.Fatalf("bad SSE record %q", rec)
		}
		out = append(out, decodeEvent(t, data))
	}
	return out
}

// parseWSBatch decodes one WebSocket message: a JSON array of events.
func parseWSBatch(t testing.TB, msg []byte) []event {
	t.Helper()
	var raw []json.RawMessage
	if err := json.Unmarshal(msg, &raw); err != nil || len(raw) == 0 {
		t.Fatalf("message is not a non-empty JSON array (%v): %.200q", err, msg)
	}
	out := make([]event, len(raw))
	for i, r := range raw {
		out[i] = decodeEvent(t, r)
	}
	return out
}

func decodeEvent(t testing.TB, data []byte) event {
	t.Helper()
	var e event
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || dec.More() {
		t.Fatalf("bad event JSON %q: %v", data, err)
	}
	return e
}

// collect drains everything pending for s through a pump, framed as SSE or
// as WebSocket batches, and decodes it.
func collect(t testing.TB, h *Hub, s *subscriber, ws bool) []event {
	t.Helper()
	k := &memSink{}
	if _, r := newPump(h, s, k, ws).drain(context.Background()); r != 0 {
		t.Fatalf("drain ended with %v", r)
	}
	var out []event
	for _, b := range k.batches {
		if limit := newPump(h, s, k, ws).limit + 1100; len(b) > limit {
			t.Fatalf("a batch of %d bytes, over the %d bound", len(b), limit)
		}
		if ws {
			out = append(out, parseWSBatch(t, b)...)
		} else {
			out = append(out, parseSSE(t, b)...)
		}
	}
	return out
}

// subModel is the brute-force expectation for one subscriber.
type subModel struct {
	s      *subscriber
	f      filter
	query  string
	ws     bool
	ids    map[string]bool
	hzLast map[string]uint32
	want   []event
	exact  bool // false when its max_hz table may over-send
}

func (m *subModel) wantsID(id string) bool { return m.ids == nil || m.ids[id] }

func (m *subModel) inBox(lat, lon int32) bool {
	return !m.f.m.hasBox || m.f.box.Contains(geo.FromFixed(lat), geo.FromFixed(lon))
}

func (m *subModel) position(u fleet.Update, nowMs uint32) {
	id := string(u.ID)
	if !fleet.ValidID(u.ID) && (len(u.ID) == 0 || len(u.ID) > MaxIDLen) {
		return
	}
	if m.f.m.types&typePosition == 0 || !m.wantsID(id) || !m.inBox(u.Lat, u.Lon) {
		return
	}
	if m.f.m.hzMs != 0 {
		if last, ok := m.hzLast[id]; ok && nowMs-last < m.f.m.hzMs {
			return
		}
		m.hzLast[id] = nowMs
	}
	m.want = append(m.want, posEvent(u))
}

func (m *subModel) expired(id string, lat, lon int32, ts uint32) {
	if len(id) == 0 || len(id) > MaxIDLen || m.f.m.types&typeExpired == 0 || !m.wantsID(id) || !m.inBox(lat, lon) {
		return
	}
	m.want = append(m.want, event{Type: "expired", ID: id, TS: ts})
}

func (m *subModel) alert(a alert.Alert) {
	if (a.State != "firing" && a.State != "resolved") || len(a.ID) == 0 || len(a.ID) > MaxIDLen {
		return
	}
	if m.f.m.types&typeAlert == 0 || !m.wantsID(a.ID) || !m.inBox(a.Lat, a.Lon) {
		return
	}
	m.want = append(m.want, alertEvent(a))
}

// randomQuery builds a random subscription query.
func randomQuery(rng *rand.Rand, trucks []string) string {
	q := url.Values{}
	if rng.IntN(10) < 7 {
		var minLon, minLat, maxLon, maxLat float64
		switch rng.IntN(5) {
		case 0: // small, on the US
			minLon, minLat = -124+rng.Float64()*50, 25+rng.Float64()*20
			maxLon, maxLat = minLon+rng.Float64()*5, minLat+rng.Float64()*3
		case 1: // across the antimeridian, half the time on whole degrees
			minLon, maxLon = 170+rng.Float64()*10, -180+rng.Float64()*10
			minLat = -30 + rng.Float64()*30
			maxLat = minLat + rng.Float64()*30
			if rng.IntN(2) == 0 {
				minLon, maxLon = float64(170+rng.IntN(10)), float64(-180+rng.IntN(10))
				minLat, maxLat = float64(-30+rng.IntN(30)), float64(rng.IntN(30))
			}
		case 2: // large: beyond the grid's per-subscriber cell limit
			minLon, minLat = -150+rng.Float64()*20, -10+rng.Float64()*10
			maxLon, maxLat = minLon+60+rng.Float64()*100, minLat+40+rng.Float64()*40
		case 3: // whole-degree edges, where points land exactly
			minLon, minLat = float64(rng.IntN(60)-130), float64(rng.IntN(30)+20)
			maxLon, maxLat = minLon+float64(rng.IntN(4)), minLat+float64(rng.IntN(4))
		default: // the world
			minLon, minLat, maxLon, maxLat = -180, -90, 180, 90
		}
		q.Set("bbox", fmt.Sprintf("%v,%v,%v,%v", minLon, minLat, min(maxLon, 180), min(maxLat, 90)))
	}
	if rng.IntN(10) < 3 {
		n := 1 + rng.IntN(40)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = trucks[rng.IntN(len(trucks))]
		}
		q.Set("ids", strings.Join(ids, ","))
	}
	if rng.IntN(10) < 4 {
		all := []string{"position", "expired", "alert", "lag"}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		q.Set("types", strings.Join(all[:1+rng.IntN(4)], ","))
	}
	if rng.IntN(10) < 3 {
		q.Set("max_hz", []string{"0.5", "1", "2", "10"}[rng.IntN(4)])
	}
	return q.Encode()
}

// randomPoint returns a point, often on or next to interesting lines.
func randomPoint(rng *rand.Rand) (lat, lon int32) {
	lat = int32(rng.Int64N(1800000001) - 900000000)
	lon = int32(rng.Int64N(3600000001) - 1800000000)
	switch rng.IntN(6) {
	case 0: // on the US
		lat, lon = geo.ToFixed(25+rng.Float64()*25), geo.ToFixed(-124+rng.Float64()*58)
	case 1: // a whole degree ±1 unit
		lat = int32(rng.IntN(60)-30)*1e7 + int32(rng.IntN(3)-1)
		lon = int32(rng.IntN(80)-140)*1e7 + int32(rng.IntN(3)-1)
	case 2: // near the antimeridian, often on or next to a whole degree
		lat = int32(rng.IntN(60)-30)*1e7 + int32(rng.IntN(3)-1)
		lon = int32(170+rng.IntN(11))*1e7 + int32(rng.IntN(3)-1)
		if rng.IntN(2) == 0 {
			lon = -lon
		}
		lon = min(max(lon, -1800000000), 1800000000)
	}
	return lat, lon
}

// TestRoutingBruteForce publishes random positions, expirations and alerts
// to randomly filtered subscribers (joining and leaving between rounds) and
// checks every subscriber's events, decoded from the wire format, against a
// brute-force evaluation of its filter.
func TestRoutingBruteForce(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	h, err := New(Options{WideHz: -1, Buffer: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var clk atomic.Int64
	h.clock = clk.Load
	trucks := make([]string, 300)
	for i := range trucks {
		trucks[i] = fmt.Sprintf("t%03d", i)
	}
	var subs []*subModel
	join := func() {
		q := randomQuery(rng, trucks)
		f, err := parseFilter(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		s, err := h.subscribe(&f)
		if err != nil {
			t.Fatal(err)
		}
		m := &subModel{s: s, f: f, query: q, ws: rng.IntN(2) == 0, hzLast: map[string]uint32{}, exact: true}
		if f.ids != nil {
			m.ids = map[string]bool{}
			for _, id := range f.ids {
				m.ids[id] = true
			}
		}
		if f.m.hzMs != 0 {
			// Exact unless more than hzWays of the trucks share a set.
			var occ [hzSets]int
			for _, id := range trucks {
				occ[maphash.String(h.seed, id)%hzSets]++
			}
			m.exact = slices.Max(occ[:]) <= hzWays
		}
		subs = append(subs, m)
	}
	for range 10 {
		join()
	}
	ups := make([]fleet.Update, 0, 200)
	for round := range 40 {
		if round > 0 && rng.IntN(3) == 0 && len(subs) > 1 {
			i := rng.IntN(len(subs))
			h.unsubscribe(subs[i].s)
			subs = slices.Delete(subs, i, i+1)
		}
		if rng.IntN(3) == 0 {
			join()
		}
		for op := range 30 {
			clk.Add(rng.Int64N(400e6))
			nowMs := uint32(clk.Load() / 1e6)
			switch r := rng.IntN(10); {
			case r < 6:
				ups = ups[:0]
				for range 1 + rng.IntN(200) {
					lat, lon := randomPoint(rng)
					id := []byte(trucks[rng.IntN(len(trucks))])
					switch rng.IntN(100) {
					case 0:
						id = nil
					case 1:
						id = bytes.Repeat([]byte("x"), MaxIDLen+1)
					}
					ups = append(ups, fleet.Update{ID: id, Position: fleet.Position{
						Lat: lat, Lon: lon, TS: uint32(round*1000 + op), Speed: uint16(rng.IntN(2000)), Heading: uint16(rng.IntN(360))}})
				}
				h.PublishPositions(ups)
				for _, m := range subs {
					for _, u := range ups {
						m.position(u, nowMs)
					}
				}
			case r < 8: // a burst of expirations, sometimes longer than one take
				for range 1 + rng.IntN(2*ctlTakeMax) {
					id := trucks[rng.IntN(len(trucks))]
					ts := uint32(rng.Uint32())
					lat, lon := randomPoint(rng)
					h.PublishExpired([]byte(id), lat, lon, ts)
					for _, m := range subs {
						m.expired(id, lat, lon, ts)
					}
				}
			default:
				lat, lon := randomPoint(rng)
				a := alert.Alert{Rule: []string{"speeding", "idle \"long\"", strings.Repeat("é", 100)}[rng.IntN(3)],
					ID: trucks[rng.IntN(len(trucks))], State: []string{"firing", "resolved", "bogus"}[rng.IntN(3)],
					TS: rng.Uint32(), Lat: lat, Lon: lon}
				h.PublishAlert(a)
				for _, m := range subs {
					m.alert(a)
				}
			}
		}
		for _, m := range subs {
			got := collect(t, h, m.s, m.ws)
			want := m.want
			m.want = m.want[:0]
			if !m.exact {
				t.Logf("round %d %s: max_hz table crowded, positions not compared", round, m.query)
				got = slices.DeleteFunc(got, func(e event) bool { return e.Type == "position" })
				want = slices.DeleteFunc(slices.Clone(want), func(e event) bool { return e.Type == "position" })
			}
			if !slices.Equal(got, want) {
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				var g, w event
				if i < len(got) {
					g = got[i]
				}
				if i < len(want) {
					w = want[i]
				}
				t.Fatalf("round %d %s: got %d events, want %d; first difference at %d:\n got  %+v\n want %+v",
					round, m.query, len(got), len(want), i, g, w)
			}
		}
	}
	st := h.Stats()
	if st.Dropped != 0 || st.Invalid == 0 || st.Queued == 0 {
		t.Errorf("stats %+v: want no drops, some invalid, some queued", st)
	}
	for _, m := range subs {
		h.unsubscribe(m.s)
	}
	if h.snap.Load() != nil {
		t.Error("snapshot not nil with no subscribers")
	}
	h.Close()
}

func publishN(h *Hub, n int, id func(i int) string) []fleet.Update {
	ups := make([]fleet.Update, n)
	for i := range ups {
		ups[i] = fleet.Update{ID: []byte(id(i)), Position: fleet.Position{Lat: int32(i), Lon: int32(-i), TS: uint32(i)}}
	}
	h.PublishPositions(ups)
	return ups
}

// TestDropOldest checks the drop policy: a full ring loses its oldest
// positions, the next delivery starts with a lag event carrying the exact
// count, and every truck's newest position survives.
func TestDropOldest(t *testing.T) {
	h, err := New(Options{WideHz: -1, Buffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, _ := parseFilter("")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	ups := publishN(h, 100, func(i int) string { return fmt.Sprintf("t%d", i%5) })
	got := collect(t, h, s, false)
	want := []event{{Type: "lag", Dropped: 92}}
	for _, u := range ups[92:] {
		want = append(want, posEvent(u))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Newest per truck wins: each truck's last event is its last update.
	last := map[string]uint32{}
	for _, e := range got[1:] {
		last[e.ID] = e.TS
	}
	for i := 95; i < 100; i++ {
		if last[fmt.Sprintf("t%d", i%5)] != uint32(i) {
			t.Errorf("truck t%d: newest delivered ts %d, want %d", i%5, last[fmt.Sprintf("t%d", i%5)], i)
		}
	}

	// Control events interleaved with dropped positions keep their place.
	publishN(h, 10, func(i int) string { return "p" })                      // p0…p9
	h.PublishExpired([]byte("gone"), 0, 0, 7)                               // after p9
	ups = publishN(h, 10, func(i int) string { return "q" })                // q0…q9: q0, q1 dropped
	h.PublishAlert(alert.Alert{Rule: "r", ID: "q", State: "firing", TS: 9}) // at the end
	got = collect(t, h, s, true)
	want = []event{{Type: "lag", Dropped: 12}, {Type: "expired", ID: "gone", TS: 7}}
	for _, u := range ups[2:] {
		want = append(want, posEvent(u))
	}
	want = append(want, event{Type: "alert", Rule: "r", ID: "q", State: "firing", TS: 9})
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// The control ring (16 entries here) drops its oldest too.
	for i := range 20 {
		h.PublishExpired([]byte("e"), 0, 0, uint32(i))
	}
	got = collect(t, h, s, false)
	if len(got) != 17 || got[0] != (event{Type: "lag", Dropped: 4}) || got[1].TS != 4 || got[16].TS != 19 {
		t.Fatalf("control overflow: got %+v", got)
	}
	st := h.Stats()
	if st.Dropped != 92+12+4 || st.Queued != 100+20+2+20 {
		t.Errorf("stats %+v", st)
	}
}

// TestDropOldestByBytes checks the position ring's byte limit: with IDs
// of MaxIDLen bytes, fewer than Buffer events fit in Buffer ×
// posPayloadBudget bytes, and the oldest go first.
func TestDropOldestByBytes(t *testing.T) {
	h, err := New(Options{WideHz: -1, Buffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f, _ := parseFilter("")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	long := strings.Repeat("x", MaxIDLen-2)
	ups := publishN(h, 20, func(i int) string { return fmt.Sprintf("%s%02d", long, i) })
	rec := len(appendPositionRecord(nil, &ups[19]))
	fit := 8 * posPayloadBudget / rec
	if fit >= 8 {
		t.Fatalf("%d records of %d bytes fit: the test needs fewer than 8", fit, rec)
	}
	got := collect(t, h, s, false)
	want := []event{{Type: "lag", Dropped: uint64(20 - fit)}}
	for _, u := range ups[20-fit:] {
		want = append(want, posEvent(u))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// A one-event ring still holds the longest position there is: an ID
	// of MaxIDLen bytes that each escape to six.
	h1, _ := New(Options{WideHz: -1, Buffer: 1})
	defer h1.Close()
	s1, _ := h1.subscribe(&f)
	defer h1.unsubscribe(s1)
	ups = publishN(h1, 2, func(i int) string { return strings.Repeat(string(rune(1+i)), MaxIDLen) })
	if got := collect(t, h1, s1, true); !slices.Equal(got, []event{{Type: "lag", Dropped: 1}, posEvent(ups[1])}) {
		t.Fatalf("one-event ring: got %+v", got)
	}
}

// TestLagNotRequested checks that a subscriber without "lag" in types
// loses events silently but still gets the newest.
func TestLagNotRequested(t *testing.T) {
	h, _ := New(Options{WideHz: -1, Buffer: 4})
	defer h.Close()
	f, _ := parseFilter("types=position")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	ups := publishN(h, 10, func(i int) string { return "t" })
	got := collect(t, h, s, false)
	if len(got) != 4 || got[0] != posEvent(ups[6]) {
		t.Fatalf("got %+v", got)
	}
}

// TestControlTakeSplit puts more control events between positions than one
// take holds and checks that order survives the split.
func TestControlTakeSplit(t *testing.T) {
	h, _ := New(Options{WideHz: -1, Buffer: 1 << 13}) // a control ring of 512
	defer h.Close()
	f, _ := parseFilter("")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	var want []event
	for r := range 3 {
		ups := publishN(h, 10, func(i int) string { return fmt.Sprintf("r%d", r) })
		for _, u := range ups {
			want = append(want, posEvent(u))
		}
		for i := range 3*ctlTakeMax + 5 {
			h.PublishExpired([]byte("x"), 0, 0, uint32(i))
			want = append(want, event{Type: "expired", ID: "x", TS: uint32(i)})
		}
	}
	if got := collect(t, h, s, true); !slices.Equal(got, want) {
		t.Fatalf("got %d events, want %d, or in another order", len(got), len(want))
	}
}

// TestHzTableNeverUnderSends crowds one set of a max_hz table with more
// trucks than it has ways and checks that an event the exact per-truck rule
// would send (given the truck's last event actually sent) is always sent.
func TestHzTableNeverUnderSends(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 3))
	f, _ := parseFilter("max_hz=2")
	s := newSubscriber(&f, 64, 64*posPayloadBudget, 16)
	last := map[uint64]uint32{}
	now := uint32(0)
	over := 0
	for range 20000 {
		now += uint32(rng.IntN(50))
		// 12 trucks, all in set 5, with distinct tags.
		h := uint64(rng.IntN(12)+1)<<33 | 5
		l, ok := last[h]
		exact := !ok || now-l >= f.m.hzMs
		got := s.hzAllowLocked(h, now)
		if exact && !got {
			t.Fatalf("truck %x at %d ms: exact rule sends, table throttled", h, now)
		}
		if got {
			// The rule is relative to the truck's last event actually
			// sent, over-sent ones included.
			last[h] = now
			if !exact {
				over++
			}
		}
	}
	t.Logf("over-sent %d events with 12 trucks in a 4-way set", over)
	if over == 0 {
		t.Error("a crowded set never over-sent: the test does not exercise eviction")
	}
}

// TestPublishNoSubscribers checks the idle path: no accounting, no
// allocation.
func TestPublishNoSubscribers(t *testing.T) {
	h, _ := New(Options{WideHz: -1})
	defer h.Close()
	ups := []fleet.Update{{ID: []byte("t1")}}
	allocs := testing.AllocsPerRun(100, func() {
		h.PublishPositions(ups)
		h.PublishExpired(ups[0].ID, 0, 0, 1)
		h.PublishAlert(alert.Alert{ID: "t1", State: "firing"})
	})
	if allocs != 0 {
		t.Errorf("%v allocations per publish with no subscriber", allocs)
	}
	if st := h.Stats(); st.Published != 0 || st.Subscribers != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestPublishAllocs checks that steady-state publishing to subscribers
// allocates nothing.
func TestPublishAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	h, _ := New(Options{WideHz: -1, Buffer: 64})
	defer h.Close()
	for _, q := range []string{"", "bbox=-10,-10,10,10", "ids=t1,t2&max_hz=1", "types=alert,expired"} {
		f, err := parseFilter(q)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := h.subscribe(&f)
		defer h.unsubscribe(s)
	}
	ups := make([]fleet.Update, 1000)
	for i := range ups {
		ups[i] = fleet.Update{ID: fmt.Appendf(nil, "t%d", i%10), Position: fleet.Position{Lat: int32(i) * 1e5, Lon: int32(i) * 1e4}}
	}
	for range 100 { // grow rings and scratch
		h.PublishPositions(ups)
	}
	allocs := testing.AllocsPerRun(50, func() {
		h.PublishPositions(ups)
		h.PublishExpired(ups[1].ID, 0, 0, 1)
		h.PublishAlert(alert.Alert{Rule: "r", ID: "t1", State: "firing"})
	})
	if allocs != 0 {
		t.Errorf("%v allocations per publish", allocs)
	}
	// Delivery (take, encode, write) allocates nothing either, once the
	// batch buffer has grown.
	f, _ := parseFilter("")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	for _, ws := range []bool{false, true} {
		p := newPump(h, s, &countSink{}, ws)
		h.PublishPositions(ups)
		p.drain(context.Background())
		allocs = testing.AllocsPerRun(50, func() {
			h.PublishPositions(ups)
			h.PublishAlert(alert.Alert{Rule: "r", ID: "t1", State: "firing"})
			if _, r := p.drain(context.Background()); r != 0 {
				t.Fatal(r)
			}
		})
		if allocs != 0 {
			t.Errorf("ws=%v: %v allocations per delivery", ws, allocs)
		}
	}
}

// TestConcurrentChurn runs publishers on several goroutines while
// subscribers with live pumps join and leave and Stats is read, for the
// race detector; then checks that everything is released.
func TestConcurrentChurn(t *testing.T) {
	seed := testSeed(t)
	h, _ := New(Options{WideHz: -1, Buffer: 128, FlushInterval: time.Millisecond, MaxSubscribers: 8})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			ups := make([]fleet.Update, 64)
			for i := range ups {
				ups[i].ID = fmt.Appendf(nil, "t%02d", i)
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range ups {
					ups[i].Lat, ups[i].Lon = randomPoint(rng)
				}
				h.PublishPositions(ups)
				h.PublishExpired(ups[0].ID, 0, 0, 1)
				h.PublishAlert(alert.Alert{Rule: "r", ID: "t01", State: "resolved", Lat: ups[1].Lat, Lon: ups[1].Lon})
			}
		}()
	}
	wg.Add(1)
	go func() { // subscribers come and go, each with a pump
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 99))
		trucks := []string{"t01", "t02", "t03"}
		for {
			select {
			case <-stop:
				return
			default:
			}
			f, err := parseFilter(randomQuery(rng, trucks))
			if err != nil {
				t.Error(err)
				return
			}
			s, err := h.subscribe(&f)
			if err != nil {
				continue // at the limit
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(20))*time.Millisecond)
			ws := rng.IntN(2) == 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer h.unsubscribe(s)
				defer cancel()
				newPump(h, s, &countSink{}, ws).run(ctx)
			}()
			time.Sleep(time.Millisecond)
		}
	}()
	for range 30 {
		_ = h.Stats()
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	h.Close()
	st := h.Stats()
	if st.Subscribers != 0 || h.snap.Load() != nil || st.Delivered == 0 {
		t.Fatalf("after churn: %+v", st)
	}
	if st.Delivered+st.Dropped > st.Queued {
		t.Errorf("delivered %d + dropped %d > queued %d", st.Delivered, st.Dropped, st.Queued)
	}
}
