package sim

import (
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/geo"
)

func TestPlacesData(t *testing.T) {
	places, err := loadPlaces()
	if err != nil {
		t.Fatal(err)
	}
	us := 0
	for _, p := range places {
		if p.country == "US" {
			us++
			if p.lat < 24 || p.lat > 50 || p.lon < -125 || p.lon > -66 {
				t.Errorf("%s (%v, %v) outside the continental US", p.name, p.lat, p.lon)
			}
		}
	}
	if us != 700 || len(places)-us < 250 {
		t.Errorf("%d US places and %d others, want 700 and >= 250", us, len(places)-us)
	}
	// Spot-check a few well-known coordinates against the source.
	want := map[string][2]float64{
		"New York City/US": {40.71427, -74.00597},
		"Chicago/US":       {41.85003, -87.65005},
		"London/GB":        {51.50853, -0.12574},
	}
	for _, p := range places {
		if w, ok := want[p.name+"/"+p.country]; ok {
			if p.lat != w[0] || p.lon != w[1] {
				t.Errorf("%s at (%v, %v), want %v", p.name, p.lat, p.lon, w)
			}
			delete(want, p.name+"/"+p.country)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing places %v", want)
	}
}

func TestParsePlacesErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"fields", "a\tUS\tNY\t1\t2\n", "fields"},
		{"number", "a\tUS\tNY\tx\t2\t3\nb\tUS\tNY\t1\t2\t3\n", "bad number"},
		{"range", "a\tUS\tNY\t91\t2\t3\nb\tUS\tNY\t1\t2\t3\n", "out of range"},
		{"population", "a\tUS\tNY\t1\t2\t0\nb\tUS\tNY\t1\t2\t3\n", "out of range"},
		{"too few", "# only a comment\na\tUS\tNY\t1\t2\t3\n", "1 places"},
	}
	for _, tt := range tests {
		_, err := parsePlaces([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "sim: ") {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
	got, err := parsePlaces([]byte("# c\r\na\tUS\tNY\t1\t2\t3\r\nb\tFR\t11\t-1.5\t-2\t4"))
	if err != nil || len(got) != 2 || got[1].lat != -1.5 || got[1].country != "FR" {
		t.Errorf("parsePlaces = %+v, %v", got, err)
	}
}

func TestNetworks(t *testing.T) {
	for r := range numRegions {
		n, err := regionNetwork(r)
		if err != nil {
			t.Fatal(err)
		}
		inR := map[uint16]bool{}
		for _, m := range n.members {
			inR[m] = true
			if !inRegion(&n.places[m], r) {
				t.Errorf("%v: member %s not in region", r, n.places[m].name)
			}
		}
		for _, m := range n.members {
			lo, hi := n.nbrOff[m], n.nbrOff[m+1]
			if lo == hi {
				t.Errorf("%v: %s has no neighbours", r, n.places[m].name)
			}
			p := &n.places[m]
			for _, q := range n.nbr[lo:hi] {
				d := geo.DistanceM(p.lat, p.lon, n.places[q].lat, n.places[q].lon) / 1000
				if !inR[q] || q == m || d < minLegKm {
					t.Errorf("%v: %s -> %s (%.0f km) is not a valid neighbour", r, p.name, n.places[q].name, d)
				}
			}
			for j := lo + 1; j < hi; j++ {
				if n.nbrCum[j] <= n.nbrCum[j-1] {
					t.Errorf("%v: %s: cumulative weights not increasing", r, p.name)
				}
			}
		}
		// Draws cover the extremes of [0, 1).
		for _, u := range []float64{0, 0.5, 0.9999999} {
			s := n.pickStart(u)
			if !inR[s] {
				t.Errorf("%v: pickStart(%v) = %d outside region", r, u, s)
			}
			q := n.pickNeighbour(s, u)
			if !inR[q] || q == s {
				t.Errorf("%v: pickNeighbour(%d, %v) = %d", r, s, u, q)
			}
		}
	}
	if _, err := regionNetwork(numRegions); err == nil {
		t.Error("regionNetwork(numRegions) succeeded")
	}
}

func TestParseRegion(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Region
		ok   bool
	}{
		{"", RegionAll, true}, {"all", RegionAll, true}, {"us", RegionUS, true},
		{"US", RegionUS, true}, {"world", RegionWorld, true}, {"mars", 0, false},
	} {
		got, err := ParseRegion(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseRegion(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok && tt.in != "" && tt.in != "US" && got.String() != tt.in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}
