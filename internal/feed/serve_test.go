package feed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/fleetd/fleetd/internal/alert"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/fleetd/fleetd/internal/fleet"
)

// testServer serves a hub on 127.0.0.1 (httptest's default).
type testServer struct {
	h   *Hub
	srv *httptest.Server
}

func newTestServer(t *testing.T, o Options) *testServer {
	t.Helper()
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/sse", h.ServeSSE)
	mux.HandleFunc("/ws", h.ServeWS)
	ts := &testServer{h: h, srv: httptest.NewServer(mux)}
	t.Cleanup(ts.close)
	return ts
}

// close ends the hub (so streaming handlers return), then the server.
func (ts *testServer) close() {
	ts.h.Close()
	ts.srv.Close()
}

func (ts *testServer) wsURL(query string) string {
	return "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/ws?" + query
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sseReader reads SSE records from a response body.
type sseReader struct{ r *bufio.Reader }

// next returns the next record: a data event, or a comment (without ':').
func (s *sseReader) next(t testing.TB) (ev event, comment string, err error) {
	var rec []byte
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			return ev, "", err
		}
		if len(line) == 1 {
			break
		}
		rec = append(rec, line...)
	}
	if c, ok := bytes.CutPrefix(rec, []byte(":")); ok {
		return ev, strings.TrimSpace(string(c)), nil
	}
	evs := parseSSE(t, append(rec, '\n'))
	if len(evs) != 1 {
		t.Fatalf("record %q holds %d events", rec, len(evs))
	}
	return evs[0], "", nil
}

// nextEvent skips comments.
func (s *sseReader) nextEvent(t testing.TB) event {
	t.Helper()
	for {
		ev, c, err := s.next(t)
		if err != nil {
			t.Fatalf("reading SSE: %v", err)
		}
		if c == "" {
			return ev
		}
	}
}

// dialSSE subscribes over SSE and returns once the subscription is live.
func dialSSE(t *testing.T, ctx context.Context, ts *testServer, query string) (*http.Response, *sseReader) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.srv.URL+"/sse?"+query, nil)
	resp, err := ts.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("SSE answer %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	r := &sseReader{bufio.NewReader(resp.Body)}
	if _, c, err := r.next(t); err != nil || c != "fleetd feed" {
		t.Fatalf("first record: comment %q, err %v", c, err)
	}
	return resp, r
}

// smallBufferDialer dials with a small receive buffer, so that a client
// that stops reading is felt by the server after a few MB rather than the
// tens of MB loopback autotuning allows.
func smallBufferDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
		return errors.Join(err, serr)
	}}
}

// rawSSE opens a TCP connection and sends an SSE request without reading
// anything back.
func rawSSE(t *testing.T, ts *testServer, query string) net.Conn {
	t.Helper()
	c, err := smallBufferDialer().Dial("tcp", ts.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /sse?%s HTTP/1.1\r\nHost: feed\r\n\r\n", query)
	return c
}

// e2eWorkload publishes positions of 20 trucks (some outside the test
// bbox), expirations and alerts, and returns what a subscriber with query
// q must get, in order.
func e2eWorkload(t *testing.T, h *Hub, q string) []event {
	f, err := parseFilter(q)
	if err != nil {
		t.Fatal(err)
	}
	m := &subModel{f: f, hzLast: map[string]uint32{}}
	for b := range 50 {
		ups := make([]fleet.Update, 0, 100)
		for i := range 100 {
			truck := i % 20
			lon := -75 + float64(truck)*0.5 // trucks 10… are east of -70
			ups = append(ups, fleet.Update{ID: fmt.Appendf(nil, "truck-%07d", truck),
				Position: fleet.MakePosition(40+float64(i)/1000, lon, int64(1764000000+b*5+i/20), 52.5, float64(i))})
		}
		h.PublishPositions(ups)
		for _, u := range ups {
			m.position(u, 0)
		}
		if b%10 == 9 {
			id := fmt.Sprintf("truck-%07d", b%20)
			h.PublishExpired([]byte(id), 407128000, -740060000, uint32(1764000000+b))
			m.expired(id, 407128000, -740060000, uint32(1764000000+b))
			a := alert.Alert{Rule: "speeding", ID: id, State: "firing", TS: uint32(1764000000 + b), Lat: 407128000, Lon: -740060000}
			h.PublishAlert(a)
			m.alert(a)
		}
	}
	return m.want
}

// checkPerTruckOrder checks that each truck's positions arrive with
// non-decreasing ts.
func checkPerTruckOrder(t *testing.T, evs []event) {
	last := map[string]uint32{}
	for _, e := range evs {
		if e.Type != "position" {
			continue
		}
		if e.TS < last[e.ID] {
			t.Fatalf("truck %s: ts %d after %d", e.ID, e.TS, last[e.ID])
		}
		last[e.ID] = e.TS
	}
}

const e2eQuery = "bbox=-80,30,-70,45"

func TestSSEEndToEnd(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1, Buffer: 1 << 14, FlushInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, r := dialSSE(t, ctx, ts, e2eQuery)
	defer resp.Body.Close()
	// Unchunked: the stream is the connection's remaining bytes.
	if len(resp.TransferEncoding) != 0 || !resp.Close || resp.ContentLength != -1 {
		t.Errorf("transfer encoding %v, close %v, length %d: want an unchunked stream that ends with its connection",
			resp.TransferEncoding, resp.Close, resp.ContentLength)
	}
	want := e2eWorkload(t, ts.h, e2eQuery)
	got := make([]event, 0, len(want))
	for len(got) < len(want) {
		got = append(got, r.nextEvent(t))
	}
	checkPerTruckOrder(t, got)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	waitFor(t, 5*time.Second, "delivered count", func() bool { return ts.h.Stats().Delivered == uint64(len(want)) })
	if st := ts.h.Stats(); st.Subscribers != 1 || st.Dropped != 0 || st.Queued != uint64(len(want)) {
		t.Errorf("stats %+v, want 1 subscriber, %d queued, none dropped", st, len(want))
	}
}

func TestWSEndToEnd(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1, Buffer: 1 << 14, FlushInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.wsURL(e2eQuery), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	want := e2eWorkload(t, ts.h, e2eQuery)
	var got []event
	msgs := 0
	for len(got) < len(want) {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("message type %v", typ)
		}
		got = append(got, parseWSBatch(t, msg)...)
		msgs++
	}
	checkPerTruckOrder(t, got)
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	t.Logf("%d events in %d messages", len(got), msgs)
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "unsubscribe", func() bool { return ts.h.Stats().Subscribers == 0 })
}

// TestHTTPErrors checks the 400 and 503 answers of both endpoints.
func TestHTTPErrors(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1, MaxSubscribers: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.srv.URL+path, nil)
		resp, err := ts.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	for _, ep := range []string{"/sse", "/ws"} {
		for _, tt := range []struct{ query, body string }{
			{"bbox=1,2,3", `{"error":"bbox \"1,2,3\" must be four numbers: minLon,minLat,maxLon,maxLat"}`},
			{"ids=a,b%20c", `{"error":"bad ids: \"b c\" is not a truck ID (1–64 bytes of A-Z a-z 0-9 _ . : -)"}`},
			{"types=position,speed", `{"error":"unknown type \"speed\" in types (want position, expired, alert or lag, comma-separated)"}`},
			{"max_hz=0", `{"error":"bad max_hz \"0\": want a number greater than 0 and at most 1000 (position events per truck per second)"}`},
			{"ids=" + strings.Repeat("a,", MaxIDs) + "a", `{"error":"too many ids: 1001 (at most 1000)"}`},
		} {
			code, body := get(ep + "?" + tt.query)
			if code != http.StatusBadRequest || body != tt.body {
				t.Errorf("%s?%.40s: %d %s\nwant 400 %s", ep, tt.query, code, body, tt.body)
			}
		}
	}
	// Fill the hub with one SSE and one WebSocket subscriber.
	resp, _ := dialSSE(t, ctx, ts, "")
	defer resp.Body.Close()
	c, _, err := websocket.Dial(ctx, ts.wsURL(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, ep := range []string{"/sse", "/ws"} {
		code, body := get(ep)
		if want := `{"error":"too many subscribers (limit 2)"}`; code != http.StatusServiceUnavailable || body != want {
			t.Errorf("%s at the limit: %d %s, want 503 %s", ep, code, body, want)
		}
	}
	if _, _, err := websocket.Dial(ctx, ts.wsURL(""), nil); err == nil {
		t.Error("WebSocket dial past the limit succeeded")
	}
	if st := ts.h.Stats(); st.Rejected != 3 || st.Subscribers != 2 {
		t.Errorf("stats %+v, want 3 rejected, 2 subscribers", st)
	}
}

// TestSlowSubscriberDoesNotBlockPublish publishes a million events while
// one SSE subscriber reads nothing: publishing must not wait for it, a
// second subscriber must get its events meanwhile, and when the slow one
// resumes it must account for every event (delivered + reported dropped)
// and end with each truck's newest position.
func TestSlowSubscriberDoesNotBlockPublish(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1, Stall: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := rawSSE(t, ts, "")
	defer slow.Close()
	resp, fast := dialSSE(t, ctx, ts, "ids=t0001")
	defer resp.Body.Close()
	waitFor(t, 5*time.Second, "two subscribers", func() bool { return ts.h.Stats().Subscribers == 2 })

	const trucks, batches = 1000, 1000 // 1M events
	ups := make([]fleet.Update, trucks)
	for i := range ups {
		ups[i].ID = fmt.Appendf(nil, "t%04d", i)
	}
	start := time.Now()
	for b := range batches {
		for i := range ups {
			ups[i].TS = uint32(b)
		}
		ts.h.PublishPositions(ups)
	}
	elapsed := time.Since(start)
	ts.h.PublishExpired([]byte("end"), 0, 0, 0)
	t.Logf("published %d events in %v (%.0f events/s) with a stalled subscriber", trucks*batches, elapsed,
		float64(trucks*batches)/elapsed.Seconds())
	if elapsed > 20*time.Second {
		t.Errorf("publishing took %v: it waits on the stalled subscriber", elapsed)
	}
	// The fast subscriber got all its 1000 events while the slow one sat.
	for b := range batches {
		if e := fast.nextEvent(t); e.ID != "t0001" || e.TS != uint32(b) {
			t.Fatalf("fast subscriber event %d: %+v", b, e)
		}
	}

	// Resume the slow one.
	br := bufio.NewReader(slow)
	r2, err := http.ReadResponse(br, nil) // its body is closed with the connection
	if err != nil {
		t.Fatal(err)
	}
	rd := &sseReader{bufio.NewReaderSize(r2.Body, 64<<10)}
	var positions, dropped, lags uint64
	newest := map[string]uint32{}
	for {
		e := rd.nextEvent(t)
		if e.Type == "expired" && e.ID == "end" {
			break
		}
		switch e.Type {
		case "lag":
			dropped += e.Dropped
			lags++
		case "position":
			positions++
			if e.TS < newest[e.ID] {
				t.Fatalf("truck %s: ts %d after %d", e.ID, e.TS, newest[e.ID])
			}
			newest[e.ID] = e.TS
		}
	}
	t.Logf("slow subscriber: %d positions, %d dropped in %d lag events", positions, dropped, lags)
	if positions+dropped != trucks*batches {
		t.Errorf("delivered %d + dropped %d != published %d", positions, dropped, trucks*batches)
	}
	if lags == 0 || dropped == 0 {
		t.Error("no lag event: the slow subscriber lost nothing?")
	}
	for i := range trucks {
		if id := fmt.Sprintf("t%04d", i); newest[id] != batches-1 {
			t.Fatalf("truck %s: newest delivered ts %d, want %d", id, newest[id], batches-1)
		}
	}
	if st := ts.h.Stats(); st.StallDisconnects != 0 || st.Dropped != dropped {
		t.Errorf("stats %+v: want no stall, %d dropped", st, dropped)
	}
}

// TestStallDisconnect checks that subscribers that read nothing are
// disconnected after Stall while publishing goes on, over both transports.
func TestStallDisconnect(t *testing.T) {
	const stall = 300 * time.Millisecond
	for _, transport := range []string{"sse", "ws"} {
		t.Run(transport, func(t *testing.T) {
			ts := newTestServer(t, Options{WideHz: -1, Stall: stall, Buffer: 256})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if transport == "sse" {
				c := rawSSE(t, ts, "")
				defer c.Close()
			} else {
				client := &http.Client{Transport: &http.Transport{DialContext: smallBufferDialer().DialContext}}
				c, _, err := websocket.Dial(ctx, ts.wsURL(""), &websocket.DialOptions{HTTPClient: client})
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseNow() // never read
			}
			waitFor(t, 5*time.Second, "subscriber", func() bool { return ts.h.Stats().Subscribers == 1 })
			ups := make([]fleet.Update, 1000)
			for i := range ups {
				ups[i].ID = fmt.Appendf(nil, "truck-%0200d", i)[:MaxIDLen]
			}
			start := time.Now()
			for ts.h.Stats().Subscribers != 0 {
				if time.Since(start) > 20*time.Second {
					t.Fatal("stalled subscriber still connected after 20s")
				}
				ts.h.PublishPositions(ups)
				time.Sleep(time.Millisecond)
			}
			took := time.Since(start)
			t.Logf("disconnected after %v (Stall %v)", took, stall)
			if st := ts.h.Stats(); st.StallDisconnects != 1 {
				t.Errorf("stats %+v, want 1 stall disconnect", st)
			}
			if took < stall {
				t.Errorf("disconnected after %v, before Stall %v", took, stall)
			}
		})
	}
}

// slowSink completes every write, slowly.
type slowSink struct{ d time.Duration }

func (k slowSink) write([]byte) error { time.Sleep(k.d); return nil }
func (k slowSink) flush() error       { return nil }
func (k slowSink) ping() error        { return nil }

// TestStallBehind checks the other stall rule: a subscriber whose writes
// all complete but which loses events on every pass is disconnected after
// Stall.
func TestStallBehind(t *testing.T) {
	const stall = 150 * time.Millisecond
	h, _ := New(Options{WideHz: -1, Stall: stall, Buffer: 64, FlushInterval: time.Millisecond})
	defer h.Close()
	f, _ := parseFilter("")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ups := make([]fleet.Update, 200)
		for i := range ups {
			ups[i].ID = []byte("t")
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.PublishPositions(ups)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	start := time.Now()
	r := newPump(h, s, slowSink{2 * time.Millisecond}, false).run(context.Background())
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if r != endStalled || took < stall || took > 10*time.Second {
		t.Fatalf("pump ended with %v after %v, want a stall after %v", r, took, stall)
	}
	if st := h.Stats(); st.StallDisconnects != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestAbruptDisconnect closes client TCP connections without any goodbye
// and checks that the subscriber's slot and goroutines are freed.
func TestAbruptDisconnect(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// SSE: read the header so the subscription is live, then close.
	c := rawSSE(t, ts, "")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	if n := ts.h.Stats().Subscribers; n != 1 {
		t.Fatalf("%d subscribers", n)
	}
	c.Close()
	waitFor(t, 5*time.Second, "SSE slot freed", func() bool { return ts.h.Stats().Subscribers == 0 })

	// WebSocket: keep the raw connection and close it under the library.
	var raw net.Conn
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		raw = conn
		return conn, err
	}}}
	wc, _, err := websocket.Dial(ctx, ts.wsURL(""), &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	if n := ts.h.Stats().Subscribers; n != 1 {
		t.Fatalf("%d subscribers", n)
	}
	raw.Close()
	waitFor(t, 5*time.Second, "WebSocket slot freed", func() bool { return ts.h.Stats().Subscribers == 0 })
	wc.CloseNow()
	// Publishing to nobody is fine, and the slots are reusable.
	ts.h.PublishPositions([]fleet.Update{{ID: []byte("t")}})
	resp, r := dialSSE(t, ctx, ts, "")
	ts.h.PublishPositions([]fleet.Update{{ID: []byte("t"), Position: fleet.Position{TS: 7}}})
	if e := r.nextEvent(t); e.TS != 7 {
		t.Errorf("after reconnect: %+v", e)
	}
	resp.Body.Close()
	waitFor(t, 5*time.Second, "slot freed", func() bool { return ts.h.Stats().Subscribers == 0 })
	if st := ts.h.Stats(); st.StallDisconnects != 0 {
		t.Errorf("stats %+v: a client leaving is not a stall", st)
	}
	ts.close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

// TestCloseDisconnectsAll checks that Close ends every stream, waits for
// the handlers, refuses new subscribers and leaves no goroutine behind.
func TestCloseDisconnectsAll(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ts := newTestServer(t, Options{WideHz: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 3 {
		resp, r := dialSSE(t, ctx, ts, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			for {
				if _, _, err := r.next(t); err != nil {
					if !errors.Is(err, io.EOF) {
						errs <- fmt.Errorf("SSE stream ended with %v, want a clean EOF", err)
					}
					return
				}
			}
		}()
		c, _, err := websocket.Dial(ctx, ts.wsURL(""), nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseNow()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					if websocket.CloseStatus(err) != websocket.StatusGoingAway {
						errs <- fmt.Errorf("WebSocket ended with %v, want 1001 going away", err)
					}
					return
				}
			}
		}()
	}
	waitFor(t, 5*time.Second, "6 subscribers", func() bool { return ts.h.Stats().Subscribers == 6 })
	ts.h.PublishPositions([]fleet.Update{{ID: []byte("t")}})
	start := time.Now()
	ts.h.Close()
	t.Logf("Close took %v", time.Since(start))
	if n := ts.h.Stats().Subscribers; n != 0 {
		t.Errorf("%d subscribers after Close", n)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.srv.URL+"/sse", nil)
	resp, err := ts.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "shutting down") {
		t.Errorf("after Close: %d %s", resp.StatusCode, b)
	}
	ts.h.PublishPositions([]fleet.Update{{ID: []byte("t")}}) // a no-op
	ts.close()
	ts.srv.Client().CloseIdleConnections()
	goleak.VerifyNone(t, before)
}

// TestHeartbeat checks that idle streams get SSE ping comments and
// WebSocket pings, and that events still flow after.
func TestHeartbeat(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1, Heartbeat: 30 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, r := dialSSE(t, ctx, ts, "")
	defer resp.Body.Close()
	pings := 0
	for pings < 3 {
		_, c, err := r.next(t)
		if err != nil {
			t.Fatal(err)
		}
		if c != "ping" {
			t.Fatalf("idle stream sent %q", c)
		}
		pings++
	}
	pong := make(chan struct{}, 10)
	c, _, err := websocket.Dial(ctx, ts.wsURL(""), &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pong <- struct{}{}; return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	got := make(chan []event, 1)
	go func() {
		_, msg, err := c.Read(ctx) // answers pings while it waits
		if err != nil {
			got <- nil
			return
		}
		got <- parseWSBatch(t, msg)
	}()
	for range 3 {
		select {
		case <-pong:
		case <-ctx.Done():
			t.Fatal("no WebSocket ping")
		}
	}
	ts.h.PublishPositions([]fleet.Update{{ID: []byte("t"), Position: fleet.Position{TS: 3}}})
	if evs := <-got; len(evs) != 1 || evs[0].TS != 3 {
		t.Fatalf("WebSocket after pings: %+v", evs)
	}
	if e := r.nextEvent(t); e.TS != 3 {
		t.Fatalf("SSE after pings: %+v", e)
	}
}

// countSink completes every write at once and counts bytes.
type countSink struct{ n atomic.Int64 }

func (k *countSink) write(p []byte) error { k.n.Add(int64(len(p))); return nil }
func (k *countSink) flush() error         { return nil }
func (k *countSink) ping() error          { return nil }

// TestBurstIsNotStall checks that a subscriber whose client keeps up is
// not disconnected when every publish is a burst larger than its ring: it
// loses events (and is told so) but is not behind.
func TestBurstIsNotStall(t *testing.T) {
	const stall = 100 * time.Millisecond
	h, _ := New(Options{WideHz: -1, Stall: stall, Buffer: 64, FlushInterval: 10 * time.Millisecond})
	defer h.Close()
	f, _ := parseFilter("")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan endReason)
	k := &countSink{}
	go func() { done <- newPump(h, s, k, false).run(ctx) }()
	ups := make([]fleet.Update, 500)
	for i := range ups {
		ups[i].ID = []byte("t")
	}
	for range 50 { // 500 ms, 5 Stall periods
		h.PublishPositions(ups)
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if r := <-done; r != endGone {
		t.Fatalf("pump ended with %v, want endGone (cancelled)", r)
	}
	st := h.Stats()
	if st.StallDisconnects != 0 || st.Dropped == 0 || k.n.Load() == 0 {
		t.Fatalf("stats %+v, %d bytes written: want drops, deliveries and no stall", st, k.n.Load())
	}
}

// gateSink blocks its first write until gate is closed.
type gateSink struct {
	gate  chan struct{}
	once  sync.Once
	wrote atomic.Int64
}

func (k *gateSink) write([]byte) error {
	k.once.Do(func() { <-k.gate })
	k.wrote.Add(1)
	return nil
}
func (k *gateSink) flush() error { return nil }
func (k *gateSink) ping() error  { return nil }

// TestBehindThenIdleIsNotStall checks that a subscriber that lost events
// during one slow write, then caught up and went idle for longer than
// Stall, stays connected.
func TestBehindThenIdleIsNotStall(t *testing.T) {
	const stall = 100 * time.Millisecond
	h, _ := New(Options{WideHz: -1, Stall: stall, Heartbeat: 3 * stall, Buffer: 8, FlushInterval: time.Millisecond})
	defer h.Close()
	f, _ := parseFilter("")
	s, _ := h.subscribe(&f)
	defer h.unsubscribe(s)
	k := &gateSink{gate: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan endReason)
	go func() { done <- newPump(h, s, k, false).run(ctx) }()
	one := []fleet.Update{{ID: []byte("t")}}
	h.PublishPositions(one)
	waitFor(t, 5*time.Second, "the first write to block", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.mu.busy
	})
	burst := make([]fleet.Update, 100)
	for i := range burst {
		burst[i].ID = []byte("t")
	}
	h.PublishPositions(burst) // drops while the pump is busy writing
	time.Sleep(stall / 5)
	close(k.gate)
	waitFor(t, 5*time.Second, "the lag to be written", func() bool { return k.wrote.Load() >= 2 })
	time.Sleep(6 * stall) // idle, two heartbeats
	cancel()
	if r := <-done; r != endGone {
		t.Fatalf("pump ended with %v, want endGone", r)
	}
	if st := h.Stats(); st.StallDisconnects != 0 || st.Dropped != 92 {
		t.Fatalf("stats %+v, want 92 dropped and no stall", st)
	}
}

// TestWSSlotFreedOnClose: a client that sends a data message is closed
// with 1008, and its subscriber slot is free at once (not when the
// library's close handshake gives up, seconds later): a new subscriber
// fits under MaxSubscribers=1 straight away.
func TestWSSlotFreedOnClose(t *testing.T) {
	ts := newTestServer(t, Options{WideHz: -1, MaxSubscribers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		c, _, err := websocket.Dial(ctx, ts.wsURL(""), nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// The server closes with 1008; the client does not read, so it
		// does not answer the close handshake and the server's close waits.
		waitFor(t, 2*time.Second, "the slot to be freed", func() bool { return ts.h.Stats().Subscribers == 0 })
		if d := time.Since(start); d > time.Second {
			t.Errorf("slot freed after %v", d)
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Errorf("read after a data message: %v, want close 1008", err)
		}
		c.CloseNow()
	}
}
