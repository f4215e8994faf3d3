package history

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/geo"
	"github.com/fleetd/fleetd/internal/sim"
	"github.com/fleetd/fleetd/internal/vfs"
)

// BenchmarkDiskBytesPerPoint writes two hours of the simulator's fleet
// (every truck reporting every 30 s, its stops included) through
// history's real path — buffers sealed at the default size, runs merged —
// and reports the bytes on disk per distinct point once the hours have
// been merged, with the write rate. One op is the whole two hours.
func BenchmarkDiskBytesPerPoint(b *testing.B) {
	b.Run("positions", func(b *testing.B) { diskBytesPerPoint(b, false) })
	// What a Teltonika tracker sends besides: ignition and movement (on
	// while driving), the odometer, external and battery voltage,
	// satellites and HDOP.
	b.Run("teltonika", func(b *testing.B) { diskBytesPerPoint(b, true) })
}

func diskBytesPerPoint(b *testing.B, attrs bool) {
	const trucks, hours, every = 10_000, 2, 30
	f, err := sim.NewFleet(sim.FleetOptions{Trucks: trucks, Seed: 1, Region: sim.RegionUS})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Unix(1_764_000_000/3600*3600, 0)
	var laps [][]fleet.Update
	odometer := make([]float64, trucks)
	for lap := range hours * 3600 / every {
		ups := f.Next(nil, trucks, start.Add(time.Duration(lap*every)*time.Second))
		batch := make([]fleet.Update, len(ups))
		for i, u := range ups {
			batch[i] = fleet.Update{ID: sim.AppendID(nil, u.Truck, f.IDWidth()), Position: fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading)}
			if attrs {
				a := &batch[i].Attrs
				on, volts := int32(0), int32(12_600)
				if u.Speed > 0 {
					on, volts = 1, 13_900
				}
				odometer[u.Truck] += u.Speed / 3.6 * every
				a.Set(fleet.Ignition, on)
				a.Set(fleet.Motion, on)
				a.Set(fleet.Odometer, int32(odometer[u.Truck]))
				a.Set(fleet.ExtVoltage, volts)
				a.Set(fleet.BatteryVoltage, 4_100)
				a.Set(fleet.Satellites, int32(9+u.Truck%4))
				a.Set(fleet.HDOP, 9)
			}
		}
		laps = append(laps, batch)
	}
	points := int64(len(laps) * trucks)
	b.ReportAllocs()
	b.ResetTimer()
	var st Stats
	var moving, stopped float64
	for range b.N {
		now := start.Add(hours * time.Hour)
		h, err := Open(Options{FS: vfs.Default, Dir: b.TempDir(), Logger: quiet, Now: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		lsn := uint64(0)
		for _, batch := range laps {
			lsn++
			h.Add(batch)
			if h.ShouldSeal() {
				if err := writeAll(h, h.Seal(lsn)); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := writeAll(h, h.Seal(lsn)); err != nil {
			b.Fatal(err)
		}
		for _, p := range h.partitions() { // as a partition is once its hour is over
			if err := h.compact(p); err != nil {
				b.Fatal(err)
			}
		}
		st = h.Stats()
		moving, stopped = blockCost(b, h)
		h.Close()
	}
	b.ReportMetric(float64(st.DiskBytes)/float64(points), "disk_B/point")
	b.ReportMetric(moving, "moving_B/point")
	b.ReportMetric(stopped, "parked_B/point")
	b.ReportMetric(float64(points)*float64(b.N)/b.Elapsed().Seconds(), "points/s")
	if st.StoredPts != uint64(points) {
		b.Fatal(fmt.Sprintf("stored %d points, posted %d", st.StoredPts, points))
	}
}

// BenchmarkWithin1km: "who was inside this 1 km × 1 km box during this
// hour" over one compacted hour of a 1,000,000-truck simulated fleet. The
// trucks report every 5 minutes here (12 points each, 12M points) to keep
// the set-up within the machine's memory; a query reads the whole index
// (48 bytes a truck) and the blocks of the trucks whose hour's bounding
// box meets the box, so 30-second reporting changes only the few blocks
// decoded. Boxes are centred on random trucks' positions (a depot or a
// road), where the answers are.
func BenchmarkWithin1km(b *testing.B) {
	const trucks, every = 1_000_000, 300
	f, err := sim.NewFleet(sim.FleetOptions{Trucks: trucks, Seed: 1, Region: sim.RegionUS})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Unix(1_764_000_000/3600*3600, 0)
	now := start.Add(2 * time.Hour)
	h, err := Open(Options{FS: vfs.Default, Dir: b.TempDir(), Logger: quiet, Now: func() time.Time { return now }, BufferBytes: 2 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	var centres [][2]float64
	var ups []sim.Update
	batch := make([]fleet.Update, 0, trucks)
	ids := make([]byte, 0, trucks*16)
	for lap := range 3600 / every {
		ups = f.Next(ups[:0], trucks, start.Add(time.Duration(lap*every)*time.Second))
		batch, ids = batch[:0], ids[:0]
		for _, u := range ups {
			n := len(ids)
			ids = sim.AppendID(ids, u.Truck, f.IDWidth())
			batch = append(batch, fleet.Update{ID: ids[n:len(ids):len(ids)], Position: fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading)})
			if lap == 6 && u.Truck%1000 == 0 {
				centres = append(centres, [2]float64{u.Lat, u.Lon})
			}
		}
		h.Add(batch)
	}
	if err := writeAll(h, h.Seal(1)); err != nil {
		b.Fatal(err)
	}
	for _, p := range h.partitions() {
		if err := h.compact(p); err != nil {
			b.Fatal(err)
		}
	}
	from, to := uint32(start.Unix()), uint32(start.Unix()+3599)
	found := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c := centres[i%len(centres)]
		dLat := 500 / 111_195.0
		dLon := dLat / math.Cos(c[0]*math.Pi/180)
		vs, ans, err := h.Within(BoxRegion(geo.Box{MinLat: c[0] - dLat, MinLon: c[1] - dLon, MaxLat: c[0] + dLat, MaxLon: c[1] + dLon}), from, to)
		if err != nil || ans.Incomplete || len(vs) == 0 {
			b.Fatalf("within: %d trucks, %v %+v", len(vs), err, ans)
		}
		found += len(vs)
	}
	b.ReportMetric(float64(found)/float64(b.N), "trucks/answer")
}

// blockCost splits the bytes of h's runs (blocks and their index entries)
// between truck-hours that moved and truck-hours parked throughout (every
// point at speed 0), per point of each.
func blockCost(b *testing.B, h *History) (moving, parked float64) {
	var bytes, pts [2]float64
	var buf []byte
	var g group
	for _, p := range h.partitions() {
		for _, r := range p.runs {
			var blockErr error
			err := r.scan(func(_ int, e *entry) bool {
				buf, blockErr = r.block(e, buf, &g)
				k := 1
				for i := range g.pts {
					if g.pts[i].Speed != 0 {
						k = 0
						break
					}
				}
				bytes[k] += float64(e.length + entrySize)
				pts[k] += float64(len(g.pts))
				return blockErr == nil
			})
			if err != nil || blockErr != nil {
				b.Fatal(err, blockErr)
			}
		}
	}
	return bytes[0] / pts[0], bytes[1] / pts[1]
}
