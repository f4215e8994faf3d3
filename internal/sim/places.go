package sim

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"

	"github.com/fleetd/fleetd/internal/geo"
)

//go:embed places.tsv
var placesTSV []byte

// Region selects which places of the embedded data set a Fleet drives
// between. Trucks never leave their region.
type Region uint8

const (
	// RegionAll uses every place; two thirds of the trucks start in the US.
	RegionAll Region = iota
	// RegionUS uses the continental US places only.
	RegionUS
	// RegionWorld uses the places outside the US only.
	RegionWorld
	numRegions
)

// String returns the name ParseRegion accepts.
func (r Region) String() string {
	switch r {
	case RegionAll:
		return "all"
	case RegionUS:
		return "us"
	case RegionWorld:
		return "world"
	}
	return "Region(" + strconv.Itoa(int(r)) + ")"
}

// ParseRegion parses "all" (or ""), "us" or "world".
func ParseRegion(s string) (Region, error) {
	switch s {
	case "", "all":
		return RegionAll, nil
	case "us", "US":
		return RegionUS, nil
	case "world":
		return RegionWorld, nil
	}
	return 0, fmt.Errorf("sim: unknown region %q (want all, us or world)", s)
}

// place is one row of places.tsv.
type place struct {
	name       string
	country    string
	lat, lon   float64
	population float64
}

// Route choice. A truck at place p drives next to one of p's neighbours:
// the places of its region between minLegKm and maxLegKm away (great-circle
// distance between the centres), picked with probability proportional to
// population / max(distance, 50 km) (a gravity model: big and near places
// attract most traffic), keeping the maxNeighbours heaviest. A place with
// no such neighbour falls back to its fallbackNeighbours nearest places.
const (
	minLegKm           = 20
	maxLegKm           = 450
	maxNeighbours      = 24
	fallbackNeighbours = 3
	usStartShare       = 2.0 / 3 // RegionAll: share of trucks starting in the US
)

// network is the immutable route graph of one region. Place indexes are
// uint16 so that a truck can store its destination place in two bytes.
type network struct {
	places []place // all places (shared by every region)

	members  []uint16  // places of the region
	startCum []float64 // cumulative start weights, parallel to members

	nbrOff []uint32  // neighbours of place p: nbr[nbrOff[p]:nbrOff[p+1]]
	nbr    []uint16  // neighbour place indexes
	nbrCum []float32 // cumulative weights, restarting at each place
}

var (
	placesOnce sync.Once
	allPlaces  []place
	placesErr  error

	netOnce [numRegions]sync.Once
	nets    [numRegions]*network
)

// loadPlaces parses the embedded data once.
func loadPlaces() ([]place, error) {
	placesOnce.Do(func() {
		allPlaces, placesErr = parsePlaces(placesTSV)
	})
	return allPlaces, placesErr
}

// parsePlaces parses places.tsv: '#' comment lines, then one place per line
// as name, country, admin1, lat, lon, population separated by tabs.
func parsePlaces(data []byte) ([]place, error) {
	var out []place
	for lineNo := 1; len(data) > 0; lineNo++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := bytes.Split(line, []byte{'\t'})
		if len(f) != 6 {
			return nil, fmt.Errorf("sim: places line %d: %d fields, want 6", lineNo, len(f))
		}
		lat, err1 := strconv.ParseFloat(string(f[3]), 64)
		lon, err2 := strconv.ParseFloat(string(f[4]), 64)
		pop, err3 := strconv.ParseFloat(string(f[5]), 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("sim: places line %d: bad number", lineNo)
		}
		if !(lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180 && pop > 0) {
			return nil, fmt.Errorf("sim: places line %d: out of range", lineNo)
		}
		out = append(out, place{name: string(f[0]), country: string(f[1]), lat: lat, lon: lon, population: pop})
	}
	if len(out) < 2 || len(out) > math.MaxUint16 {
		return nil, fmt.Errorf("sim: places: %d places, want 2..%d", len(out), math.MaxUint16)
	}
	return out, nil
}

// regionNetwork returns the (cached) route graph of r.
func regionNetwork(r Region) (*network, error) {
	if r >= numRegions {
		return nil, fmt.Errorf("sim: unknown region %d", r)
	}
	places, err := loadPlaces()
	if err != nil {
		return nil, err
	}
	netOnce[r].Do(func() { nets[r] = buildNetwork(places, r) })
	if len(nets[r].members) < 2 {
		return nil, fmt.Errorf("sim: region %v has %d places", r, len(nets[r].members))
	}
	return nets[r], nil
}

func inRegion(p *place, r Region) bool {
	switch r {
	case RegionUS:
		return p.country == "US"
	case RegionWorld:
		return p.country != "US"
	}
	return true
}

// buildNetwork computes the region's start weights and neighbour lists.
// O(members²) distance computations: about 1 M for the embedded data.
func buildNetwork(places []place, r Region) *network {
	n := &network{places: places, nbrOff: make([]uint32, len(places)+1)}
	var usPop, otherPop float64
	for i := range places {
		p := &places[i]
		if !inRegion(p, r) {
			continue
		}
		n.members = append(n.members, uint16(i))
		if p.country == "US" {
			usPop += p.population
		} else {
			otherPop += p.population
		}
	}
	// Start weights: population; in RegionAll the US block is scaled to
	// usStartShare of the total so that the US map is busy.
	usScale, otherScale := 1.0, 1.0
	if r == RegionAll && usPop > 0 && otherPop > 0 {
		usScale = usStartShare / usPop
		otherScale = (1 - usStartShare) / otherPop
	}
	sum := 0.0
	for _, m := range n.members {
		p := &places[m]
		if p.country == "US" {
			sum += p.population * usScale
		} else {
			sum += p.population * otherScale
		}
		n.startCum = append(n.startCum, sum)
	}

	type cand struct {
		idx uint16
		d   float64
		w   float64
	}
	var cands []cand
	for i := range places {
		n.nbrOff[i] = uint32(len(n.nbr))
		p := &places[i]
		if !inRegion(p, r) {
			continue
		}
		cands = cands[:0]
		for _, m := range n.members {
			if int(m) == i {
				continue
			}
			q := &places[m]
			d := geo.DistanceM(p.lat, p.lon, q.lat, q.lon) / 1000
			cands = append(cands, cand{idx: m, d: d, w: q.population / math.Max(d, 50)})
		}
		keep := cands[:0]
		for _, c := range cands {
			if c.d >= minLegKm && c.d <= maxLegKm {
				keep = append(keep, c)
			}
		}
		if len(keep) > 0 {
			sort.Slice(keep, func(a, b int) bool { return keep[a].w > keep[b].w })
			keep = keep[:min(len(keep), maxNeighbours)]
		} else {
			// Isolated place: fall back to the nearest places that are
			// far enough apart to make a leg.
			keep = keep[:0]
			for _, c := range cands {
				if c.d >= minLegKm {
					keep = append(keep, c)
				}
			}
			sort.Slice(keep, func(a, b int) bool { return keep[a].d < keep[b].d })
			keep = keep[:min(len(keep), fallbackNeighbours)]
			for j := range keep {
				keep[j].w = 1
			}
		}
		total := float32(0)
		for _, c := range keep {
			total += float32(c.w)
			n.nbr = append(n.nbr, c.idx)
			n.nbrCum = append(n.nbrCum, total)
		}
	}
	n.nbrOff[len(places)] = uint32(len(n.nbr))
	return n
}

// pickStart returns a region member drawn by start weight; u is in [0, 1).
func (n *network) pickStart(u float64) uint16 {
	cum := n.startCum
	x := u * cum[len(cum)-1]
	lo, hi := 0, len(cum)-1 // first i with cum[i] > x; the last one if none
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return n.members[lo]
}

// pickNeighbour returns a neighbour of place p drawn by route weight; u is in
// [0, 1). Every member has at least one neighbour (regions have ≥ 2 places
// at least minLegKm apart), so an empty list is a broken invariant.
func (n *network) pickNeighbour(p uint16, u float64) uint16 {
	lo, hi := n.nbrOff[p], n.nbrOff[int(p)+1]
	if lo == hi {
		panic(fmt.Sprintf("BUG: sim: place %d (%s) has no neighbours", p, n.places[p].name))
	}
	cum := n.nbrCum[lo:hi]
	x := float32(u) * cum[len(cum)-1]
	i, j := 0, len(cum)-1 // first i with cum[i] > x; the last one if none
	for i < j {
		mid := int(uint(i+j) >> 1)
		if cum[mid] > x {
			j = mid
		} else {
			i = mid + 1
		}
	}
	return n.nbr[int(lo)+i]
}
