package history

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/sim"
	"github.com/fleetd/fleetd/internal/vfs"
)

// BenchmarkDiskBytesPerPoint writes two hours of the simulator's fleet
// (every truck reporting every 30 s, its stops included) through
// history's real path — buffers sealed at the default size, runs merged —
// and reports the bytes on disk per distinct point once the hours have
// been merged, with the write rate. One op is the whole two hours.
func BenchmarkDiskBytesPerPoint(b *testing.B) {
	const trucks, hours, every = 10_000, 2, 30
	f, err := sim.NewFleet(sim.FleetOptions{Trucks: trucks, Seed: 1, Region: sim.RegionUS})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Unix(1_764_000_000/3600*3600, 0)
	var laps [][]fleet.Update
	for lap := range hours * 3600 / every {
		ups := f.Next(nil, trucks, start.Add(time.Duration(lap*every)*time.Second))
		batch := make([]fleet.Update, len(ups))
		for i, u := range ups {
			batch[i] = fleet.Update{ID: sim.AppendID(nil, u.Truck, f.IDWidth()), Position: fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading)}
		}
		laps = append(laps, batch)
	}
	points := int64(len(laps) * trucks)
	b.ReportAllocs()
	b.ResetTimer()
	var st Stats
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
				if err := h.Write(h.Seal(lsn)); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := h.Write(h.Seal(lsn)); err != nil {
			b.Fatal(err)
		}
		for _, p := range h.partitions() { // as a partition is once its hour is over
			if err := h.compact(p); err != nil {
				b.Fatal(err)
			}
		}
		st = h.Stats()
		h.Close()
	}
	b.ReportMetric(float64(st.DiskBytes)/float64(points), "disk_B/point")
	b.ReportMetric(float64(points)*float64(b.N)/b.Elapsed().Seconds(), "points/s")
	if st.StoredPts != uint64(points) {
		b.Fatal(fmt.Sprintf("stored %d points, posted %d", st.StoredPts, points))
	}
}
