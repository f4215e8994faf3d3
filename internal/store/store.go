package store

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/fleetd/fleetd/internal/fleet"
)

// MaxIDLen is the longest truck ID accepted, in bytes.
const MaxIDLen = fleet.MaxIDLen

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// Shards is the number of shards, rounded up to a power of two (at
	// most 256; default DefaultShards). More shards spread writers over
	// more locks; each shard keeps its own grid cells, so very many shards
	// cost memory, and every query reads every shard.
	Shards int
	// CellDeg is the spatial grid's cell size in degrees; it must divide 180
	// into a whole number of cells at 1e-7 degree resolution (default 0.5).
	CellDeg float64
	// MaxTrucks caps the number of trucks (0 = no cap). Updates for new trucks
	// past the cap are refused; known trucks keep updating.
	MaxTrucks int
}

// Position is a truck's state in its stored fixed-point form (see package
// fleet for the units).
type Position = fleet.Position

// MakePosition converts from degrees, km/h and Unix seconds, rounding to
// the stored precision. It does not validate.
func MakePosition(lat, lon float64, ts int64, speedKmh, headingDeg float64) Position {
	return fleet.MakePosition(lat, lon, ts, speedKmh, headingDeg)
}

// Update is one position report for one truck, with its optional
// attributes. ID may alias a caller's buffer; the store copies what it
// keeps.
type Update = fleet.Update

// Result counts what Apply did with a batch.
type Result struct {
	Inserted int // new trucks
	Updated  int // known trucks moved
	Stale    int // older than the stored position: accepted, not applied
	Refused  int // new trucks refused because the store is full (MaxTrucks)
	Invalid  int // empty or over-long IDs, coordinates out of range
}

// Add adds o's counts to r's.
func (r *Result) Add(o Result) {
	r.Inserted += o.Inserted
	r.Updated += o.Updated
	r.Stale += o.Stale
	r.Refused += o.Refused
	r.Invalid += o.Invalid
}

// ErrFull is returned when a shard cannot hold more slots.
var ErrFull = errors.New("store: full")

// Store is the sharded latest-position store. It is safe for concurrent use.
type Store struct {
	seed      maphash.Seed
	shardBits uint
	shards    []shard
	geom      gridGeom
	maxTrucks atomic.Int64  // 0 = no cap
	epoch     atomic.Uint32 // last-heard epoch stamped by Apply, < HeardEpochs
	live      atomic.Int64  // trucks across shards
	applying  atomic.Int32  // Apply calls running now
	scratch   sync.Pool     // *applyScratch
	knnPool   sync.Pool     // *knn
}

// DefaultShards is the shard count of Options.Shards 0: twice
// GOMAXPROCS, from 2 to 8. Writers on more shards than the cores can run
// gain nothing, and a query pays for each shard: it read-locks every one
// and looks each cell up in every one. On 2 cores, 4 shards answer a RESP
// NEARBY LIMIT 10 at 1M trucks in 13.9 µs of server CPU against 14.6 at 8
// (BenchmarkQueryCPU, 4 clients; BenchmarkNearest10Parallel 1.67 against
// 1.89 µs), and ingest as fast (BenchmarkServeIngest: 2.86M against 2.89M
// updates/s, history off 3.69M against 3.66M, 9 runs each).
func DefaultShards() int { return min(8, max(2, 2*runtime.GOMAXPROCS(0))) }

// New returns an empty Store.
func New(o Options) (*Store, error) {
	n := o.Shards
	if n <= 0 {
		n = DefaultShards()
	}
	if n > 256 {
		return nil, fmt.Errorf("store: %d shards is more than 256", n)
	}
	n = 1 << bits.Len(uint(n-1))
	cell := o.CellDeg
	if cell == 0 {
		cell = 0.5
	}
	g, err := newGridGeom(cell)
	if err != nil {
		return nil, err
	}
	s := &Store{
		seed:      maphash.MakeSeed(),
		shardBits: uint(bits.TrailingZeros(uint(n))),
		shards:    make([]shard, n),
		geom:      g,
	}
	s.maxTrucks.Store(int64(o.MaxTrucks))
	for i := range s.shards {
		s.shards[i].init(s)
	}
	return s, nil
}

// Len returns the number of trucks stored.
func (s *Store) Len() int { return int(s.live.Load()) }

// NumShards returns the number of shards.
func (s *Store) NumShards() int { return len(s.shards) }

func (s *Store) hash(id []byte) uint64 { return maphash.Bytes(s.seed, id) }

func (s *Store) shardOf(h uint64) int {
	if s.shardBits == 0 {
		return 0
	}
	return int(h >> (64 - s.shardBits))
}

// ValidID reports whether id is 1–64 bytes of [A-Za-z0-9_.:-].
func ValidID(id []byte) bool { return fleet.ValidID(id) }

// validPosition is the store's own cheap range check.
func validPosition(u *Update) bool { return u.Position.Valid() && u.Attrs.Valid() }

// Get returns the stored position of a truck.
func (s *Store) Get(id []byte) (Position, bool) { return s.GetAttrs(id, nil) }

// GetAttrs is Get that also fills in the attributes stored with the
// position, if attrs is not nil.
func (s *Store) GetAttrs(id []byte, attrs *fleet.Attrs) (Position, bool) {
	if len(id) == 0 || len(id) > MaxIDLen {
		return Position{}, false
	}
	h := s.hash(id)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	slot, _, ok := sh.lookup(id, h)
	if !ok {
		return Position{}, false
	}
	if attrs != nil {
		sh.attrs.get(slot, attrs)
	}
	return sh.rec(slot).pos(), true
}

// SetMaxTrucks changes the cap on the number of trucks (0 = none). Trucks
// already stored stay; only new ones are refused while the store is at the
// cap.
func (s *Store) SetMaxTrucks(n int) { s.maxTrucks.Store(int64(n)) }

// Delete removes a truck and reports whether it existed.
func (s *Store) Delete(id []byte) bool { return s.DeleteIf(id, math.MaxUint32) }

// DeleteIf removes a truck only if its stored ts is at most maxTS, and
// reports whether it did. Conditional deletes commute with updates that are
// newer than the delete, which is what makes a replayed log reach the same
// state whatever order concurrent requests reached it in.
func (s *Store) DeleteIf(id []byte, maxTS uint32) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	h := s.hash(id)
	sh := &s.shards[s.shardOf(h)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	slot, pos, ok := sh.lookup(id, h)
	if !ok || sh.rec(slot).ts > maxTS {
		return false
	}
	sh.removeLocked(slot, pos)
	return true
}

// SetEpoch sets the last-heard epoch that Apply stamps on every truck it
// hears from from now on, stale updates included; it is kept mod
// HeardEpochs. Trucks are stamped with the current epoch when inserted, so
// trucks recovered at startup count as heard then. The engine advances the
// epoch on its clock (see engine.Options.TTL); a store whose epoch never
// moves never expires anything.
func (s *Store) SetEpoch(e uint32) { s.epoch.Store(e % HeardEpochs) }

// heardBits is the current epoch, shifted into place in record.hh.
func (s *Store) heardBits() uint16 { return uint16(s.epoch.Load()) << headingBits }

// Expire removes every truck not heard from for age epochs or more (its
// last-heard epoch is at least age behind the current one) and returns how
// many it removed. Ages are counted mod HeardEpochs, so 1 ≤ age <
// HeardEpochs, and a caller that lets the epoch advance by more than
// HeardEpochs-age between calls sees trucks older than that as younger
// than they are: expired late, never early.
//
// Expire works through each shard in runs of one chunk under the write
// lock, so writers wait at most one run. fn, if not nil, is called with
// each expired truck's ID (valid during the call, under the shard's lock:
// keep it short).
func (s *Store) Expire(age int, fn func(id []byte, p Position)) int {
	if age < 1 || age >= HeardEpochs {
		panic(fmt.Sprintf("BUG: store: Expire age %d outside [1, %d)", age, HeardEpochs))
	}
	cur, minAge := s.heardBits(), uint16(age)
	n := 0
	var idbuf [MaxIDLen]byte
	for i := range s.shards {
		sh := &s.shards[i]
		for start := uint32(0); ; start += chunkSize {
			sh.mu.Lock()
			if start >= sh.nslots {
				sh.mu.Unlock()
				break
			}
			end := min(start+chunkSize, sh.nslots)
			for slot := start; slot < end; slot++ {
				r := sh.rec(slot)
				if r.id[0] == 0 || r.heardAge(cur) < minAge {
					continue
				}
				id := sh.appendID(idbuf[:0], r)
				_, pos, ok := sh.lookup(id, s.hash(id))
				if !ok {
					panic("BUG: store: live slot missing from the ID table")
				}
				p := r.pos()
				sh.removeLocked(slot, pos)
				if fn != nil {
					fn(id, p)
				}
				n++
			}
			sh.mu.Unlock()
		}
	}
	return n
}

// Range calls fn for every truck, shard by shard, holding a shard's read
// lock for one chunk of slots at a time. The id slice is valid during the
// call only. Range stops when fn returns false.
func (s *Store) Range(fn func(id []byte, p Position) bool) {
	s.RangeUpdates(func(u *Update) bool { return fn(u.ID, u.Position) })
}

// RangeUpdates is Range with each truck's attributes: fn gets the truck as
// the update that would recreate it. *u and u.ID are valid during the call
// only.
func (s *Store) RangeUpdates(fn func(u *Update) bool) {
	var idbuf [MaxIDLen]byte
	var u Update
	for i := range s.shards {
		sh := &s.shards[i]
		for start := uint32(0); ; start += chunkSize {
			sh.mu.RLock()
			if start >= sh.nslots {
				sh.mu.RUnlock()
				break
			}
			end := min(start+chunkSize, sh.nslots)
			for slot := start; slot < end; slot++ {
				r := sh.rec(slot)
				if r.id[0] == 0 {
					continue
				}
				u.ID, u.Position = sh.appendID(idbuf[:0], r), r.pos()
				sh.attrs.get(slot, &u.Attrs)
				if !fn(&u) {
					sh.mu.RUnlock()
					return
				}
			}
			sh.mu.RUnlock()
		}
	}
}

// parallelism is how many goroutines Apply uses for a batch of n updates
// while busy Apply calls (this one included) run. Concurrent callers
// (a cluster node's partition appliers, parallel HTTP batches) already
// keep the cores busy: a call that started more workers would have them
// spin at its barriers, yielding to the other callers' goroutines (4-8%
// of a cluster node's CPU was runtime.Gosched under spinUntil).
func (s *Store) parallelism(n int, busy int32) int {
	if n < 1024 || busy > 1 {
		return 1
	}
	return min(runtime.GOMAXPROCS(0), len(s.shards))
}
