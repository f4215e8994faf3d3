package tracker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetd/fleetd/internal/sim"
	"github.com/fleetd/fleetd/internal/teltonika"
)

// Protocols.
const (
	Teltonika = "teltonika"
	OsmAnd    = "osmand"
	MQTT      = "mqtt"
)

// DefaultTopic is where the MQTT trackers publish.
const DefaultTopic = "fleetd/sim"

// Config configures Run.
type Config struct {
	Protocol string
	// Target: host:port (teltonika), http://host:port (osmand),
	// tcp://broker:port (mqtt).
	Target   string
	Trucks   int
	Rate     float64 // reports a second in all (> 0)
	Duration time.Duration
	Workers  int // default 64, at most Trucks
	Seed     int64
	Region   sim.Region
	Topic    string // MQTT, default DefaultTopic
}

// Summary is what Run measured.
type Summary struct {
	Protocol    string  `json:"protocol"`
	Trucks      int     `json:"trucks"`
	Connections int64   `json:"connections"`
	Sent        int64   `json:"sent"`
	Acked       int64   `json:"acked"`
	Errors      int64   `json:"errors"`
	LastError   string  `json:"last_error,omitempty"`
	DurationS   float64 `json:"duration_s"`
	AckedPerSec float64 `json:"acked_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
}

// Run connects the trackers and sends their reports for cfg.Duration.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	sum := Summary{Protocol: cfg.Protocol, Trucks: cfg.Trucks}
	switch {
	case cfg.Protocol != Teltonika && cfg.Protocol != OsmAnd && cfg.Protocol != MQTT:
		return sum, fmt.Errorf("tracker: protocol %q: want teltonika, osmand or mqtt", cfg.Protocol)
	case cfg.Trucks < 1:
		return sum, errors.New("tracker: need at least one truck")
	case !(cfg.Rate > 0):
		return sum, errors.New("tracker: the rate must be positive (devices report at a pace)")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	cfg.Workers = min(cfg.Workers, cfg.Trucks)
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	r := &run{cfg: cfg}
	if cfg.Protocol == OsmAnd {
		var err error
		if r.osmAddr, r.osmHost, r.osmPath, err = osmandTarget(cfg.Target); err != nil {
			return sum, err
		}
	}
	workers := make([]*worker, cfg.Workers)
	for w := range workers {
		// Ranges differ by at most one truck, so every worker has one
		// (100,000 trucks in ranges of 196 filled only 511 of 512).
		first := w * cfg.Trucks / cfg.Workers
		count := (w+1)*cfg.Trucks/cfg.Workers - first
		f, err := sim.NewFleet(sim.FleetOptions{Trucks: cfg.Trucks, First: first, Count: count, Seed: cfg.Seed, Region: cfg.Region})
		if err != nil {
			return sum, err
		}
		workers[w] = &worker{r: r, fleet: f, first: first}
		if cfg.Duration > 0 {
			// Room for the latencies of a run that keeps its pace, up to
			// 32 MiB in all, so that appending them rarely allocates.
			workers[w].lat = make([]time.Duration, 0, int(min(cfg.Rate*cfg.Duration.Seconds(), 1<<22))/len(workers)+16)
		}
	}
	// Connect everything first: a device fleet is connected before it
	// reports.
	for _, w := range workers {
		if err := w.connect(); err != nil {
			for _, w := range workers {
				w.close()
			}
			return sum, err
		}
	}
	// The duration counts from when every tracker is connected.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	start := time.Now()
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(len(workers)) / cfg.Rate)
	for i, w := range workers {
		wg.Go(func() { w.loop(ctx, start.Add(time.Duration(i)*interval/time.Duration(len(workers))), interval) })
	}
	wg.Wait()
	for _, w := range workers {
		w.close()
	}
	el := time.Since(start)
	var lat []time.Duration
	for _, w := range workers {
		lat = append(lat, w.lat...)
	}
	slices.Sort(lat)
	sum.Connections = r.conns.Load()
	sum.Sent, sum.Acked, sum.Errors = r.sent.Load(), int64(len(lat)), r.errors.Load()
	if e := r.lastErr.Load(); e != nil {
		sum.LastError = *e
	}
	sum.DurationS = el.Seconds()
	sum.AckedPerSec = float64(sum.Acked) / el.Seconds()
	if len(lat) > 0 {
		sum.P50Ms = float64(lat[len(lat)/2].Microseconds()) / 1000
		sum.P99Ms = float64(lat[len(lat)*99/100].Microseconds()) / 1000
	}
	if sum.Acked == 0 && sum.LastError != "" {
		return sum, fmt.Errorf("tracker: nothing acknowledged: %s", sum.LastError)
	}
	return sum, nil
}

type run struct {
	cfg                 Config
	osmAddr, osmHost    string // OsmAnd: where to dial, the Host header
	osmPath             string // and the request path, "/" or "/path/"
	sent, errors, conns atomic.Int64
	lastErr             atomic.Pointer[string]
}

func (r *run) fail(err error) {
	r.errors.Add(1)
	s := err.Error()
	r.lastErr.Store(&s)
}

// worker owns a range of trucks and their connections.
type worker struct {
	r     *run
	fleet *sim.Fleet
	first int
	tk    []net.Conn // teltonika: one per truck of the range
	osm   *httpConn
	mq    paho.Client
	lat   []time.Duration
	buf   []byte
	ups   []sim.Update
}

func (w *worker) connect() error {
	cfg := w.r.cfg
	switch cfg.Protocol {
	case Teltonika:
		w.tk = make([]net.Conn, w.fleet.Len())
		for i := range w.tk {
			c, err := net.DialTimeout("tcp", cfg.Target, 10*time.Second)
			if err != nil {
				return fmt.Errorf("tracker: connecting truck %d: %w", w.first+i, err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var ok [1]byte
			if _, err := c.Write(teltonika.AppendIMEI(nil, imei(w.first+i))); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, ok[:]); err != nil || ok[0] != 1 {
				c.Close()
				return fmt.Errorf("tracker: truck %d: handshake answered %x (%v)", w.first+i, ok[0], err)
			}
			w.tk[i] = c
			w.r.conns.Add(1)
		}
	case OsmAnd:
		w.osm = newHTTPConn(w.r.osmAddr, func() { w.r.conns.Add(1) })
		if err := w.osm.connect(context.Background()); err != nil {
			return fmt.Errorf("tracker: connecting to %s: %w", cfg.Target, err)
		}
	case MQTT:
		o := paho.NewClientOptions().AddBroker(cfg.Target).SetClientID(fmt.Sprintf("fleetd-sim-%d-%d", cfg.Seed, w.first)).
			SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(time.Second)
		w.mq = paho.NewClient(o)
		if tok := w.mq.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("tracker: connecting to the broker %s: %v", cfg.Target, tok.Error())
		}
		w.r.conns.Add(1)
	}
	return nil
}

func (w *worker) close() {
	if w == nil {
		return
	}
	for _, c := range w.tk {
		if c != nil {
			c.Close()
		}
	}
	if w.mq != nil {
		w.mq.Disconnect(100)
	}
	if w.osm != nil {
		w.osm.drop()
	}
}

// loop sends one report every interval until ctx ends.
func (w *worker) loop(ctx context.Context, next time.Time, interval time.Duration) {
	if w.osm != nil {
		// The end of the run ends a request in flight.
		defer context.AfterFunc(ctx, w.osm.abort)()
	}
	t := time.NewTimer(time.Hour) // reused: time.After allocated a timer a report
	defer t.Stop()
	for {
		if d := time.Until(next); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		next = next.Add(interval)
		now := time.Now()
		w.ups = w.fleet.Next(w.ups[:0], 1, now)
		u := w.ups[0]
		w.r.sent.Add(1)
		t0 := time.Now()
		if err := w.send(ctx, u); err != nil {
			if ctx.Err() == nil {
				w.r.fail(err)
			}
			continue
		}
		w.lat = append(w.lat, time.Since(t0))
	}
}

func (w *worker) send(ctx context.Context, u sim.Update) error {
	cfg := w.r.cfg
	switch cfg.Protocol {
	case Teltonika:
		c := w.tk[int(u.Truck)-w.first]
		moving := u.Speed > 0
		rec := teltonika.Record{TimeMs: u.TS * 1000, Lat: int32(u.Lat * 1e7), Lon: int32(u.Lon * 1e7),
			Speed: uint16(u.Speed + 0.5), Angle: uint16(u.Heading) % 360, Satellites: 9,
			IO: teltonika.IO{Mask: teltonika.HasIgnition | teltonika.HasMovement | teltonika.HasExtVoltage,
				Ignition: moving, Movement: moving, ExtVoltage: 24000}}
		w.buf = teltonika.AppendFrame(w.buf[:0], teltonika.Codec8, []teltonika.Record{rec})
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(w.buf); err != nil {
			return err
		}
		var ack [4]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			return err
		}
		if binary.BigEndian.Uint32(ack[:]) != 1 {
			return fmt.Errorf("tracker: ack %d for 1 record", binary.BigEndian.Uint32(ack[:]))
		}
	case OsmAnd:
		w.buf = append(w.buf[:0], "GET "...)
		w.buf = append(w.buf, w.r.osmPath...)
		w.buf = append(w.buf, "?id="...)
		w.buf = sim.AppendID(w.buf, u.Truck, w.fleet.IDWidth())
		w.buf = append(w.buf, "&lat="...)
		w.buf = strconv.AppendFloat(w.buf, u.Lat, 'f', 7, 64)
		w.buf = append(w.buf, "&lon="...)
		w.buf = strconv.AppendFloat(w.buf, u.Lon, 'f', 7, 64)
		w.buf = append(w.buf, "&timestamp="...)
		w.buf = strconv.AppendInt(w.buf, u.TS, 10)
		w.buf = append(w.buf, "&speed="...)
		w.buf = strconv.AppendFloat(w.buf, u.Speed/1.852, 'f', 2, 64)
		w.buf = append(w.buf, "&bearing="...)
		w.buf = strconv.AppendFloat(w.buf, u.Heading, 'f', 1, 64)
		w.buf = append(w.buf, "&accuracy=5&batt=80 HTTP/1.1\r\nHost: "...)
		w.buf = append(w.buf, w.r.osmHost...)
		w.buf = append(w.buf, "\r\n\r\n"...)
		status, err := w.osm.do(ctx, w.buf)
		if err != nil {
			return err
		}
		if status != 200 {
			return fmt.Errorf("tracker: HTTP %d %s", status, bytes.TrimSpace(w.osm.body()))
		}
	case MQTT:
		w.buf = append(w.buf[:0], `{"id":"`...)
		w.buf = sim.AppendID(w.buf, u.Truck, w.fleet.IDWidth())
		w.buf = append(w.buf, `","lat":`...)
		w.buf = strconv.AppendFloat(w.buf, u.Lat, 'f', 7, 64)
		w.buf = append(w.buf, `,"lon":`...)
		w.buf = strconv.AppendFloat(w.buf, u.Lon, 'f', 7, 64)
		w.buf = append(w.buf, `,"ts":`...)
		w.buf = strconv.AppendInt(w.buf, u.TS, 10)
		w.buf = append(w.buf, `,"speed":`...)
		w.buf = strconv.AppendFloat(w.buf, u.Speed, 'f', 1, 64)
		w.buf = append(w.buf, `,"heading":`...)
		w.buf = strconv.AppendFloat(w.buf, u.Heading, 'f', 1, 64)
		if u.Speed > 0 {
			w.buf = append(w.buf, `,"ignition":1}`...)
		} else {
			w.buf = append(w.buf, `,"ignition":0}`...)
		}
		tok := w.mq.Publish(cfg.Topic, 1, false, append([]byte(nil), w.buf...))
		if !tok.WaitTimeout(30 * time.Second) {
			return errors.New("tracker: no PUBACK within 30s")
		}
		return tok.Error()
	}
	return nil
}

// imei is truck i's IMEI: 35 and the index in 13 digits.
func imei(i int) string {
	s := strconv.Itoa(i)
	return "35" + "0000000000000"[len(s):] + s
}
