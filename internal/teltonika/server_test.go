package teltonika

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/store"
)

// fakeEngine records applied batches; gate, if set, holds Apply until it
// is closed; fail makes Apply fail.
type fakeEngine struct {
	mu      sync.Mutex
	applied []fleet.Update
	gate    chan struct{}
	fail    error
}

func (e *fakeEngine) Apply(b []fleet.Update) (store.Result, error) {
	if e.gate != nil {
		<-e.gate
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail != nil {
		return store.Result{}, e.fail
	}
	for _, u := range b {
		u.ID = append([]byte(nil), u.ID...)
		e.applied = append(e.applied, u)
	}
	return store.Result{Updated: len(b)}, nil
}

func (e *fakeEngine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.applied)
}

func startServer(t *testing.T, goroutines bool, eng gateway.Engine, o Options) *Server {
	t.Helper()
	o.Goroutines = goroutines
	com := gateway.NewCommitter(eng, 0, 0)
	o.Addr = "127.0.0.1:0"
	o.Logger = slog.New(slog.DiscardHandler)
	s, err := Listen(o, com)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); com.Close() })
	return s
}

func dial(t *testing.T, s *Server, imei string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if imei != "" {
		if _, err := c.Write(AppendIMEI(nil, imei)); err != nil {
			t.Fatal(err)
		}
		if b := readN(t, c, 1); b[0] != 1 {
			t.Fatalf("handshake answered %x", b)
		}
	}
	return c
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// wantClosed checks that the server closes c without sending anything.
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 16)
	n, err := c.Read(b)
	if n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes (% x), %v; want the connection closed", n, b[:n], err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func recsAt(n int, ts int64) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{TimeMs: (ts + int64(i)) * 1000, Lat: 407000000 + int32(i), Lon: -740000000, Speed: 50, Angle: 90, Altitude: 10}
	}
	return recs
}

func TestServerAcksAfterApply(t *testing.T) { eachMode(t, testServerAcksAfterApply) }

func testServerAcksAfterApply(t *testing.T, goroutines bool) {
	eng := &fakeEngine{gate: make(chan struct{})}
	s := startServer(t, goroutines, eng, Options{IDPrefix: "tk-"})
	c := dial(t, s, "356307042441013")
	if _, err := c.Write(AppendFrame(nil, Codec8, recsAt(3, 1764000000))); err != nil {
		t.Fatal(err)
	}
	// Apply has not returned: no ack may arrive.
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); n != 0 || !isTimeout(err) {
		t.Fatalf("acknowledged before durable: %d bytes, %v", n, err)
	}
	close(eng.gate)
	if ack := readN(t, c, 4); binary.BigEndian.Uint32(ack) != 3 {
		t.Fatalf("ack % x", ack)
	}
	if eng.count() != 3 || string(eng.applied[0].ID) != "tk-356307042441013" || eng.applied[2].TS != 1764000002 {
		t.Fatalf("applied %+v", eng.applied)
	}
	// The vendor example (no GPS fix): acknowledged, nothing applied.
	if _, err := c.Write(unhex(t, vendorFrames[2].hex)); err != nil {
		t.Fatal(err)
	}
	if ack := readN(t, c, 4); binary.BigEndian.Uint32(ack) != 2 {
		t.Fatalf("ack % x", ack)
	}
	// The ack counter moves just after the ack is written.
	for deadline := time.Now().Add(5 * time.Second); s.Stats.Acks.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	st := s.Stats.Snapshot()
	if st.Frames != 2 || st.Points != 3 || st.Rejected != 2 || st.Acks != 2 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerClosesOnBadInput(t *testing.T) { eachMode(t, testServerClosesOnBadInput) }

func testServerClosesOnBadInput(t *testing.T, goroutines bool) {
	eng := &fakeEngine{}
	s := startServer(t, goroutines, eng, Options{})
	good := AppendFrame(nil, Codec8Extended, recsAt(2, 1764000000))
	badCRC := append([]byte(nil), good...)
	badCRC[len(badCRC)-1] ^= 1
	for _, tt := range []struct {
		name  string
		imei  string
		bytes []byte
	}{
		{"bad CRC", "356307042441013", badCRC},
		{"garbage", "356307042441013", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"length over the limit", "356307042441013", []byte{0, 0, 0, 0, 0x7F, 0, 0, 0}},
		{"IMEI not digits", "", AppendIMEI(nil, "35630704244101X")},
	} {
		before := s.Stats.BadFrames.Load()
		c := dial(t, s, tt.imei)
		if _, err := c.Write(tt.bytes); err != nil {
			t.Fatal(err)
		}
		if tt.imei == "" {
			if b := readN(t, c, 1); b[0] != 0 {
				t.Fatalf("%s: handshake answered %x", tt.name, b)
			}
		}
		wantClosed(t, c)
		if s.Stats.BadFrames.Load() != before+1 {
			t.Fatalf("%s: bad frames %d, was %d", tt.name, s.Stats.BadFrames.Load(), before)
		}
	}
	if eng.count() != 0 {
		t.Fatalf("applied %d", eng.count())
	}
}

func TestServerNoAckOnEngineError(t *testing.T) { eachMode(t, testServerNoAckOnEngineError) }

func testServerNoAckOnEngineError(t *testing.T, goroutines bool) {
	eng := &fakeEngine{fail: errors.New("disk full")}
	s := startServer(t, goroutines, eng, Options{})
	c := dial(t, s, "356307042441013")
	if _, err := c.Write(AppendFrame(nil, Codec16, recsAt(1, 1764000000))); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, c)
	if s.Stats.CommitErrors.Load() != 1 || s.Stats.Acks.Load() != 0 {
		t.Fatalf("stats %+v", s.Stats.Snapshot())
	}
}

func TestServerTimeouts(t *testing.T) { eachMode(t, testServerTimeouts) }

func testServerTimeouts(t *testing.T, goroutines bool) {
	s := startServer(t, goroutines, &fakeEngine{}, Options{HandshakeTimeout: 100 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	c := dial(t, s, "")
	wantClosed(t, c) // never sent the IMEI
	c = dial(t, s, "356307042441013")
	wantClosed(t, c) // idle
	if s.Stats.Timeouts.Load() != 2 {
		t.Fatalf("timeouts %d", s.Stats.Timeouts.Load())
	}
}

// TestServerSplitWrites: a frame and its handshake dribbled a byte at a
// time are acknowledged as a whole.
func TestServerSplitWrites(t *testing.T) { eachMode(t, testServerSplitWrites) }

func testServerSplitWrites(t *testing.T, goroutines bool) {
	eng := &fakeEngine{}
	s := startServer(t, goroutines, eng, Options{})
	c := dial(t, s, "")
	for _, b := range AppendIMEI(nil, "356307042441013") {
		_, _ = c.Write([]byte{b})
		time.Sleep(time.Millisecond)
	}
	if b := readN(t, c, 1); b[0] != 1 {
		t.Fatal("handshake")
	}
	for _, b := range AppendFrame(nil, Codec8, recsAt(2, 1764000000)) {
		_, _ = c.Write([]byte{b})
		time.Sleep(time.Millisecond)
	}
	if ack := readN(t, c, 4); binary.BigEndian.Uint32(ack) != 2 {
		t.Fatalf("ack % x", ack)
	}
}

func TestServerConnLimit(t *testing.T) { eachMode(t, testServerConnLimit) }

func testServerConnLimit(t *testing.T, goroutines bool) {
	s := startServer(t, goroutines, &fakeEngine{}, Options{MaxConns: 1})
	dial(t, s, "356307042441013")
	c := dial(t, s, "")
	wantClosed(t, c)
	if s.Stats.ConnsRefused.Load() != 1 {
		t.Fatal("not counted")
	}
}

// eachMode runs a server test with the poller and with a goroutine per
// connection.
func eachMode(t *testing.T, f func(t *testing.T, goroutines bool)) {
	for _, g := range []bool{false, true} {
		name := "poller"
		if g {
			name = "goroutines"
		}
		t.Run(name, func(t *testing.T) { f(t, g) })
	}
}

// TestServerPipelined: two frames in one write get two acks, in order;
// Close with devices connected returns.
func TestServerPipelined(t *testing.T) { eachMode(t, testServerPipelined) }

func testServerPipelined(t *testing.T, goroutines bool) {
	eng := &fakeEngine{}
	s := startServer(t, goroutines, eng, Options{})
	c := dial(t, s, "356307042441013")
	b := AppendFrame(nil, Codec8, recsAt(2, 1764000000))
	b = AppendFrame(b, Codec16, recsAt(3, 1764000100))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if a := readN(t, c, 8); binary.BigEndian.Uint32(a) != 2 || binary.BigEndian.Uint32(a[4:]) != 3 {
		t.Fatalf("acks % x", a)
	}
	dial(t, s, "356307042441014") // idle
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs with connections open")
	}
	wantClosed(t, c)
	if n := s.Stats.Connections.Load(); n != 0 {
		t.Fatalf("%d connections after Close", n)
	}
}

// TestServerRandomChunks: devices send their handshake and packets cut
// into random pieces with random pauses, some ending with a corrupt
// packet; every good packet is acknowledged with its count, in order, and
// a corrupt one closes the connection after the acks before it.
func TestServerRandomChunks(t *testing.T) { eachMode(t, testServerRandomChunks) }

func testServerRandomChunks(t *testing.T, goroutines bool) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	eng := &fakeEngine{}
	s := startServer(t, goroutines, eng, Options{})
	var wg sync.WaitGroup
	for dev := range 20 {
		r := rand.New(rand.NewPCG(seed, uint64(dev)))
		wg.Go(func() {
			c, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			stream := AppendIMEI(nil, fmt.Sprintf("35000000000%04d", dev))
			var want []uint32
			for k := range 1 + r.IntN(8) {
				n := 1 + r.IntN(30)
				if r.IntN(4) == 0 {
					n = 1 + r.IntN(255) // up to ~11 KB: the frame buffer grows while it arrives
				}
				stream = AppendFrame(stream, []byte{Codec8, Codec8Extended, Codec16}[r.IntN(3)], recsAt(n, 1764000000+int64(k*100)))
				want = append(want, uint32(n))
			}
			corrupt := r.IntN(3) == 0
			if corrupt {
				f := AppendFrame(nil, Codec8, recsAt(1, 1764100000))
				f[len(f)-1] ^= 0xFF
				stream = append(stream, f...)
			}
			go func() {
				for len(stream) > 0 {
					k := min(len(stream), 1+r.IntN(64))
					if _, err := c.Write(stream[:k]); err != nil {
						return
					}
					stream = stream[k:]
					if r.IntN(4) == 0 {
						time.Sleep(time.Duration(r.IntN(3)) * time.Millisecond)
					}
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var b [4]byte
			if _, err := io.ReadFull(c, b[:1]); err != nil || b[0] != 1 {
				t.Errorf("device %d: handshake %x %v", dev, b[0], err)
				return
			}
			for i, n := range want {
				if _, err := io.ReadFull(c, b[:]); err != nil || binary.BigEndian.Uint32(b[:]) != n {
					t.Errorf("device %d: ack %d: % x %v, want %d", dev, i, b, err, n)
					return
				}
			}
			if corrupt {
				if m, err := c.Read(b[:]); m != 0 || err == nil || isTimeout(err) {
					t.Errorf("device %d: after the corrupt packet: %d bytes, %v", dev, m, err)
				}
			}
		})
	}
	wg.Wait()
}

// TestScratchWindow: a fresh frame buffer starts at growStep and doubles
// as bytes arrive, never past the frame; a pooled one large enough is
// used whole at once.
func TestScratchWindow(t *testing.T) {
	sc := &scratch{}
	const size = 10000
	got := 0
	var lens []int
	for got < size {
		w := sc.window(got, size)
		lens = append(lens, len(sc.buf))
		for i := range w {
			w[i] = byte(got + i)
		}
		got += len(w)
	}
	if want := []int{2048, 4096, 8192, 10000}; !reflect.DeepEqual(lens, want) {
		t.Fatalf("buffer lengths %v, want %v", lens, want)
	}
	for i, b := range sc.buf {
		if b != byte(i) {
			t.Fatalf("byte %d lost in a move", i)
		}
	}
	sc.buf = sc.buf[:0]
	if w := sc.window(0, 9000); len(w) != 9000 {
		t.Fatalf("a 10000-byte pooled buffer gives %d of 9000", len(w))
	}
}
