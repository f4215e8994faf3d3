package store

// Naive is the obvious design fleetd exists to beat, kept as a measured
// baseline for benchmarks and `fleetd bench`: one heap object per truck in
// a map under one lock. Do not use it for anything else.
type Naive struct {
	trucks map[string]*NaiveTruck
}

// NaiveTruck is the per-truck object of the naive layout.
type NaiveTruck struct {
	ID             string
	Lat, Lon       float64
	TS             int64
	Speed, Heading float64
}

// NewNaive returns an empty naive store.
func NewNaive() *Naive { return &Naive{trucks: make(map[string]*NaiveTruck)} }

// Apply stores a batch, latest wins by time.
func (n *Naive) Apply(batch []Update) {
	for i := range batch {
		u := &batch[i]
		t, ok := n.trucks[string(u.ID)]
		if !ok {
			t = &NaiveTruck{ID: string(u.ID)}
			n.trucks[t.ID] = t
		} else if int64(u.TS) < t.TS {
			continue
		}
		t.Lat, t.Lon, t.TS = u.LatDeg(), u.LonDeg(), int64(u.TS)
		t.Speed, t.Heading = u.SpeedKmh(), float64(u.Heading)
	}
}

// Len returns the number of trucks.
func (n *Naive) Len() int { return len(n.trucks) }
