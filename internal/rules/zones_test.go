package rules

import (
	"fmt"
	"math"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
	os.Exit(0) // not reached: VerifyTestMain exits
}

// fakeZone is a circle (r > 0) or a lat/lon rectangle.
type fakeZone struct {
	name string
	id   int

	lat, lon, r float64 // circle: centre and radius in metres

	minLat, minLon, maxLat, maxLon float64 // rectangle; for a circle its bounding box
}

// fakeZones implements ZoneResolver, ZoneLister and ZoneTester for tests.
// IDs are deliberately sparse so that a zone index confused with a zone
// ID shows up.
type fakeZones struct {
	zones []fakeZone
	byID  []int // zone ID → index in zones, -1 for none (a slice, as fence.Set uses)
}

func newFakeZones(zs ...fakeZone) *fakeZones {
	f := &fakeZones{}
	for i, z := range zs {
		if z.id == 0 {
			z.id = 100 + 7*i
		}
		if z.r > 0 {
			// A bounding box that contains the circle, so that Inside can
			// reject far points without trigonometry, as a real fence
			// index does. 111194 m is a little less than a degree of
			// latitude; the longitude span is widened by 1/cos(lat).
			dLat := z.r / 111194 * 1.01
			dLon := dLat / math.Cos((math.Abs(z.lat)+dLat)*math.Pi/180)
			z.minLat, z.maxLat = z.lat-dLat, z.lat+dLat
			z.minLon, z.maxLon = z.lon-dLon, z.lon+dLon
		}
		for len(f.byID) <= z.id {
			f.byID = append(f.byID, -1)
		}
		f.byID[z.id] = len(f.zones)
		f.zones = append(f.zones, z)
	}
	return f
}

// testZones is the zone set most tests use.
func testZones() *fakeZones {
	return newFakeZones(
		fakeZone{name: "depot-7", lat: 52.52, lon: 13.405, r: 500},
		fakeZone{name: "yard", lat: 48.137, lon: 11.575, r: 2000},
		fakeZone{name: "port", minLat: 53.50, minLon: 9.90, maxLat: 53.56, maxLon: 10.02},
		fakeZone{name: "z3", lat: 0.5, lon: 0.5, r: 30000},
		fakeZone{name: "z4", minLat: -0.2, minLon: -0.2, maxLat: 0.3, maxLon: 0.4},
		fakeZone{name: "zürich", lat: 47.37, lon: 8.54, r: 3000},
	)
}

func (f *fakeZones) ZoneID(name string) (int, bool) {
	for _, z := range f.zones {
		if z.name == name {
			return z.id, true
		}
	}
	return 0, false
}

func (f *fakeZones) ZoneNames() []string {
	names := make([]string, len(f.zones))
	for i, z := range f.zones {
		names[i] = z.name
	}
	return names
}

func (f *fakeZones) zone(id int) *fakeZone {
	if id < 0 || id >= len(f.byID) || f.byID[id] < 0 {
		panic(fmt.Sprintf("fakeZones: unknown zone id %d", id))
	}
	return &f.zones[f.byID[id]]
}

func (f *fakeZones) Inside(id int, lat, lon float64) bool {
	z := f.zone(id)
	inBox := lat >= z.minLat && lat <= z.maxLat && lon >= z.minLon && lon <= z.maxLon
	if z.r > 0 && inBox {
		return haversineM(z.lat, z.lon, lat, lon) <= z.r
	}
	return inBox
}

// DistanceM is 0 inside; outside a circle it is the distance to the rim,
// outside a rectangle the distance to the nearest point of it in lat/lon.
func (f *fakeZones) DistanceM(id int, lat, lon float64) float64 {
	z := f.zone(id)
	if z.r > 0 {
		d := haversineM(z.lat, z.lon, lat, lon) - z.r
		if d != d {
			return d
		}
		return math.Max(0, d)
	}
	return haversineM(lat, lon, math.Min(math.Max(lat, z.minLat), z.maxLat), math.Min(math.Max(lon, z.minLon), z.maxLon))
}

// countingZones counts calls, to observe short-circuiting.
type countingZones struct {
	*fakeZones
	inside, distance int
}

func (c *countingZones) Inside(id int, lat, lon float64) bool {
	c.inside++
	return c.fakeZones.Inside(id, lat, lon)
}

func (c *countingZones) DistanceM(id int, lat, lon float64) float64 {
	c.distance++
	return c.fakeZones.DistanceM(id, lat, lon)
}

// mapZones is a ZoneResolver without ZoneLister.
type mapZones map[string]int

func (m mapZones) ZoneID(name string) (int, bool) {
	id, ok := m[name]
	return id, ok
}

func TestFakeZonesConsistent(t *testing.T) {
	z := testZones()
	for _, zone := range z.zones {
		for _, p := range [][2]float64{{zone.lat, zone.lon}, {zone.minLat, zone.minLon}, {zone.maxLat, zone.maxLon}, {0, 0}, {52.5, 13.4}, {53.53, 9.95}} {
			in := z.Inside(zone.id, p[0], p[1])
			d := z.DistanceM(zone.id, p[0], p[1])
			if in != (d == 0) {
				t.Errorf("%s at %v: inside %v but distance %v", zone.name, p, in, d)
			}
		}
	}
}
