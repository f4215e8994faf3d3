package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/teltonika"
)

// gatewayAddr reads a gateway's address from its log line
// msg="gateway listening" gateway=NAME addr=….
func gatewayAddr(t *testing.T, p *proc, name string) string {
	t.Helper()
	re := regexp.MustCompile(`msg="gateway listening" gateway=` + name + ` addr=(\S+)`)
	m := re.FindStringSubmatch(p.logText())
	if m == nil {
		t.Fatalf("no listening line for gateway %s:\n%s", name, p.logText())
	}
	return m[1]
}

// gatewayStats reads GET /v1/stats/gateways for one gateway, and checks
// that /v1/stats shows the gateway too.
func gatewayStats(t *testing.T, p *proc, name string) map[string]float64 {
	t.Helper()
	var out, all struct {
		Gateways map[string]map[string]float64 `json:"gateways"`
	}
	if err := json.Unmarshal(p.do("GET", "/v1/stats/gateways", "").want(t, 200), &out); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &all); err != nil {
		t.Fatal(err)
	}
	if all.Gateways[name] == nil {
		t.Fatalf("/v1/stats has no gateways.%s", name)
	}
	return out.Gateways[name]
}

// tkDevice is a Teltonika tracker on one TCP connection.
type tkDevice struct {
	t    *testing.T
	c    net.Conn
	imei string
}

func dialTeltonika(t *testing.T, addr, imei string) *tkDevice {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	d := &tkDevice{t: t, c: c, imei: imei}
	if imei != "" {
		d.write(teltonika.AppendIMEI(nil, imei))
		if b := d.read(1); b[0] != 1 {
			t.Fatalf("IMEI %s answered %x", imei, b)
		}
	}
	return d
}

func (d *tkDevice) write(b []byte) {
	d.t.Helper()
	if _, err := d.c.Write(b); err != nil {
		d.t.Fatal(err)
	}
}

func (d *tkDevice) read(n int) []byte {
	d.t.Helper()
	_ = d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(d.c, b); err != nil {
		d.t.Fatalf("device %s: reading %d bytes: %v", d.imei, n, err)
	}
	return b
}

// send writes a frame of recs and checks the acknowledged count.
func (d *tkDevice) send(codec byte, recs []teltonika.Record) {
	d.t.Helper()
	d.write(teltonika.AppendFrame(nil, codec, recs))
	if n := binary.BigEndian.Uint32(d.read(4)); n != uint32(len(recs)) {
		d.t.Fatalf("device %s: ack %d, sent %d records", d.imei, n, len(recs))
	}
}

// wantClosed checks that the server closes the connection without a byte.
func (d *tkDevice) wantClosed(within time.Duration) {
	d.t.Helper()
	_ = d.c.SetReadDeadline(time.Now().Add(within))
	var b [8]byte
	n, err := d.c.Read(b[:])
	if n != 0 || err == nil {
		d.t.Fatalf("device %s: read % x, %v; want the connection closed", d.imei, b[:n], err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		d.t.Fatalf("device %s: connection still open after %v", d.imei, within)
	}
}

// tkRecord is a record at (lat, lon) degrees and ts seconds.
func tkRecord(lat, lon float64, ts int64, kmh uint16, angle uint16, alt int16) teltonika.Record {
	return teltonika.Record{TimeMs: ts * 1000, Lat: int32(lat * 1e7), Lon: int32(lon * 1e7), Speed: kmh, Angle: angle,
		Altitude: alt, Satellites: 9, IO: teltonika.IO{Mask: teltonika.HasIgnition, Ignition: true}}
}

type truckJSON struct {
	ID       string
	Lat, Lon float64
	TS       int64
	Speed    float64
	Heading  float64
	Alt      *float64
}

func getTruck(t *testing.T, p *proc, id string) (truckJSON, int) {
	t.Helper()
	r := p.do("GET", "/v1/trucks/"+id, "")
	var tr truckJSON
	if r.code == 200 {
		if err := json.Unmarshal(r.body, &tr); err != nil {
			t.Fatal(err)
		}
	}
	return tr, r.code
}

// TestTeltonikaDefaults: the three codecs through the real binary with
// its default flags (fsync always), each acknowledged with its count and
// readable through the API, counted per gateway.
func TestTeltonikaDefaults(t *testing.T) {
	p := start(t, "--teltonika", "127.0.0.1:0")
	addr := gatewayAddr(t, p, "teltonika")
	now := time.Now().Unix()
	for i, codec := range []byte{teltonika.Codec8, teltonika.Codec8Extended, teltonika.Codec16} {
		imei := fmt.Sprintf("35630704244101%d", i)
		d := dialTeltonika(t, addr, imei)
		d.send(codec, []teltonika.Record{
			tkRecord(40.7, -74.0, now-60, 30, 10, 5),
			tkRecord(40.7128, -74.006, now-30, 88, 359, 12), // the newest
			tkRecord(40.6, -73.9, now-90, 10, 20, 1),        // late: stale
		})
		tr, code := getTruck(t, p, imei)
		if code != 200 || tr.Lat != 40.7128 || tr.Lon != -74.006 || tr.TS != now-30 || tr.Speed != 88 || tr.Heading != 359 ||
			tr.Alt == nil || *tr.Alt != 12 {
			t.Fatalf("codec %#x: truck %d %+v", codec, code, tr)
		}
	}
	// The ack counter moves just after the ack is written.
	st := gatewayStats(t, p, "teltonika")
	for deadline := time.Now().Add(5 * time.Second); st["acks"] < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		st = gatewayStats(t, p, "teltonika")
	}
	if st["frames"] != 3 || st["points"] != 9 || st["acks"] != 3 || st["connections"] != 3 || st["bad_frames"] != 0 {
		t.Fatalf("gateway stats %v", st)
	}
	if m := string(p.do("GET", "/metrics", "").body); !strings.Contains(m, `fleetd_gateway_points_total{gateway="teltonika"} 9`) {
		t.Fatalf("metrics lack the teltonika points:\n%s", grepLines(m, "fleetd_gateway"))
	}
	if code := p.stop(sigterm); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func grepLines(s, frag string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, frag) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestTeltonikaFaults: a half packet then a disconnect, a bad CRC,
// garbage, a device that never sends its IMEI; each fault closes only
// its own connection, is counted and logged, and applies nothing.
func TestTeltonikaFaults(t *testing.T) {
	p := start(t, "--teltonika", "127.0.0.1:0", "--teltonika-handshake-timeout", "500ms")
	addr := gatewayAddr(t, p, "teltonika")
	now := time.Now().Unix()
	frame := teltonika.AppendFrame(nil, teltonika.Codec8, []teltonika.Record{tkRecord(41, -75, now-5, 50, 90, 3)})

	// Half a packet, then the device goes away: nothing applied.
	d := dialTeltonika(t, addr, "111111111111111")
	d.write(frame[:len(frame)/2])
	_ = d.c.Close()

	// A bad CRC: closed, nothing applied.
	bad := append([]byte(nil), frame...)
	bad[len(bad)-1] ^= 0x55
	d = dialTeltonika(t, addr, "222222222222222")
	d.write(bad)
	d.wantClosed(5 * time.Second)

	// Garbage instead of a packet.
	d = dialTeltonika(t, addr, "333333333333333")
	d.write([]byte("GET / HTTP/1.1\r\n\r\n"))
	d.wantClosed(5 * time.Second)

	// Never sends the IMEI: closed after the handshake timeout.
	d = dialTeltonika(t, addr, "")
	d.wantClosed(5 * time.Second)

	for _, imei := range []string{"111111111111111", "222222222222222", "333333333333333"} {
		if _, code := getTruck(t, p, imei); code != 404 {
			t.Fatalf("truck %s: %d, want 404 (nothing applied)", imei, code)
		}
	}
	st := gatewayStats(t, p, "teltonika")
	if st["bad_frames"] != 2 || st["timeouts"] != 1 || st["acks"] != 0 || st["points"] != 0 {
		t.Fatalf("gateway stats %v", st)
	}
	p.waitLog("teltonika: bad frame; closing the connection")
	if !strings.Contains(p.logText(), "CRC mismatch") {
		t.Fatalf("no CRC log line:\n%s", p.logText())
	}
}

// TestTeltonikaSlowDevice: with the default flags, a device that sends
// its handshake and packet one byte every 100 ms is served, while a
// healthy device on another connection is not held up by it.
func TestTeltonikaSlowDevice(t *testing.T) {
	p := start(t, "--teltonika", "127.0.0.1:0")
	addr := gatewayAddr(t, p, "teltonika")
	now := time.Now().Unix()
	frame := teltonika.AppendFrame(nil, teltonika.Codec8, []teltonika.Record{tkRecord(41, -75, now-5, 50, 90, 3)})
	slow := dialTeltonika(t, addr, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, b := range append(teltonika.AppendIMEI(nil, "555555555555555"), frame...) {
			if _, err := slow.c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	fast := dialTeltonika(t, addr, "666666666666666")
	for i := range 20 {
		fast.send(teltonika.Codec8, []teltonika.Record{tkRecord(42, -76, now-100+int64(i), 50, 90, 3)})
	}
	<-done
	if a := slow.read(1); a[0] != 1 {
		t.Fatalf("slow handshake answered %x", a)
	}
	if n := binary.BigEndian.Uint32(slow.read(4)); n != 1 {
		t.Fatalf("slow device ack %d", n)
	}
	if tr, code := getTruck(t, p, "555555555555555"); code != 200 || tr.Lat != 41 || tr.TS != now-5 {
		t.Fatalf("slow device's truck: %d %+v", code, tr)
	}
}

// TestTeltonikaResendAfterLostAck: a device whose ack is lost (it
// disconnects before reading it) sends the packet again on a new
// connection; the truck's latest state is the packet's, once.
func TestTeltonikaResendAfterLostAck(t *testing.T) {
	p := start(t, "--teltonika", "127.0.0.1:0", "--teltonika-id-prefix", "tk-")
	addr := gatewayAddr(t, p, "teltonika")
	now := time.Now().Unix()
	recs := []teltonika.Record{tkRecord(48.85, 2.35, now-20, 40, 180, 35), tkRecord(48.86, 2.36, now-10, 45, 181, 36)}
	d := dialTeltonika(t, addr, "356307042441013")
	d.write(teltonika.AppendFrame(nil, teltonika.Codec8Extended, recs))
	// Wait until it is durable (and acknowledged, unread), then drop the line.
	deadline := time.Now().Add(10 * time.Second)
	for gatewayStats(t, p, "teltonika")["acks"] < 1 {
		if time.Now().After(deadline) {
			t.Fatal("never acknowledged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = d.c.Close()
	before := stats(t, p)
	d = dialTeltonika(t, addr, "356307042441013")
	d.send(teltonika.Codec8Extended, recs)
	tr, code := getTruck(t, p, "tk-356307042441013")
	if code != 200 || tr.Lat != 48.86 || tr.Lon != 2.36 || tr.TS != now-10 || tr.Heading != 181 {
		t.Fatalf("truck %d %+v", code, tr)
	}
	after := stats(t, p)
	if after["trucks"] != 1.0 {
		t.Fatalf("trucks %v", after["trucks"])
	}
	// The resent points are not newer than what is stored: they do not
	// move the truck again (the older one is stale; the newest has the
	// same ts and position).
	if s := after["stale_total"].(float64) - before["stale_total"].(float64); s < 1 {
		t.Fatalf("resend counted %v stale", s)
	}
	// History (on by default with --data) holds each point once.
	path := fmt.Sprintf("/v1/trucks/tk-356307042441013/history?from=%d&to=%d", now-100, now)
	var h struct{ Count int }
	for deadline := time.Now().Add(5 * time.Second); ; {
		r := p.do("GET", path, "")
		if r.code != 200 {
			t.Fatalf("history: %d %s", r.code, r.body)
		}
		if err := json.Unmarshal(r.body, &h); err != nil {
			t.Fatal(err)
		}
		if h.Count >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h.Count != 2 {
		t.Fatalf("history holds %d points of the resent packet's 2", h.Count)
	}
}

// TestTeltonikaKill9 streams from many devices while fleetd is killed
// with SIGKILL, restarts it on the same data and checks that every
// acknowledged record is there (the truck at its last acknowledged
// position, or a newer one that was in flight).
func TestTeltonikaKill9(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	data := filepath.Join(t.TempDir(), "data")
	var (
		mu    sync.Mutex
		acked = map[string]ackedPos{}
		clock atomic.Int64
	)
	clock.Store(time.Now().Unix() - 30*86400) // room for millions of records before now
	for round := 0; round < 3; round++ {
		p := startData(t, data, "--teltonika", "127.0.0.1:0", "--snapshot-every", "64KiB")
		checkAcked(t, p, acked)
		addr := gatewayAddr(t, p, "teltonika")
		var wg sync.WaitGroup
		for dev := range 20 {
			dseed := r.Uint64()
			wg.Go(func() {
				rr := rand.New(rand.NewPCG(dseed, 4))
				imei := fmt.Sprintf("35000000000%04d", dev)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer c.Close()
				if _, err := c.Write(teltonika.AppendIMEI(nil, imei)); err != nil {
					return
				}
				var b [4]byte
				if _, err := io.ReadFull(c, b[:1]); err != nil {
					return
				}
				for {
					recs := make([]teltonika.Record, 1+rr.IntN(20))
					var last ackedPos
					for i := range recs {
						lat, lon := 25+rr.Float64()*24, -124+rr.Float64()*57
						ts := clock.Add(1) // a device's records are in time order
						recs[i] = tkRecord(lat, lon, ts, 50, 0, 0)
						last = ackedPos{lat: float64(recs[i].Lat) / 1e7, lon: float64(recs[i].Lon) / 1e7, ts: ts}
					}
					if _, err := c.Write(teltonika.AppendFrame(nil, teltonika.Codec8, recs)); err != nil {
						return
					}
					if _, err := io.ReadFull(c, b[:]); err != nil {
						return // killed: this packet was not acknowledged
					}
					if binary.BigEndian.Uint32(b[:]) != uint32(len(recs)) {
						t.Errorf("ack %d for %d records", binary.BigEndian.Uint32(b[:]), len(recs))
						return
					}
					mu.Lock()
					acked[imei] = last
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(300+r.IntN(700)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		p.wait()
		mu.Lock()
		t.Logf("round %d: killed with %d devices acknowledged", round, len(acked))
		mu.Unlock()
	}
	p := startData(t, data, "--teltonika", "127.0.0.1:0")
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	checkAcked(t, p, acked)
}
