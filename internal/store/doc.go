// Package store is fleetd's latest-position store: every truck's newest
// position in sharded, pointer-free slabs, an ID dictionary and an exact
// spatial index, sized for millions of trucks on one machine.
//
// # Layout
//
// Trucks are spread over a power-of-two number of shards by a seeded hash
// of their ID. A shard owns, under its own lock:
//
//	records  chunks of 4096 fixed-layout records, one per slot:
//	         | lat int32 | lon int32 | ts uint32 | speed uint16 | hh uint16 | id [16]byte |
//	         = 32 bytes. lat/lon in 1e-7 degree, ts in Unix seconds,
//	         speed in 0.1 km/h; hh is the heading in whole degrees (low 9
//	         bits) and the last-heard epoch (top 7 bits, see below); no
//	         byte is spent on either beyond the 16 bits. id[0] is the ID's
//	         length (1–15, bytes inline) or 0 for a free slot, or 0xFF for a
//	         longer ID kept in the shard's long-ID arena (offset and length
//	         inline).
//	table    the ID dictionary: open addressing with linear probing over a
//	         []uint32; an entry is tag<<24 | slot+1 (0 = empty), the tag
//	         being 8 more bits of the ID's hash, so most probes never touch a
//	         record. Sized to a load of 0.6–0.85 (about 5.5 bytes a truck).
//	grid     the spatial index: a global lat/lon grid (CellDeg degrees,
//	         0.5 by default), of which each shard keeps the cells its trucks
//	         occupy. A cell is a block of entries (uint32) inside one
//	         shared []uint32 arena, in size classes growing by 1.5x from
//	         4 slots, with free lists; a small open-addressing table maps
//	         cell keys to cells. The cell mapping is fleet.Grid. An entry
//	         is | sub-cell 8 bits | slot 24 bits |: the sub-cell (16 × 16
//	         per cell, grid.go) lets k-nearest skip records without
//	         reading them; it is exact unless the cell is loose (more than
//	         hintMax trucks in the shard, hints not maintained).
//	free     a stack of free slots, reused before the slabs grow.
//	attrs    optional attributes (package fleet: altitude…), one int32
//	         column per attribute in chunks parallel to the records, a
//	         chunk allocated only once one of its trucks sent that
//	         attribute.
//
// For the 1M-truck US fleet with 8 shards that is 32 (record) + ~6.3
// (table) + ~6 (grid blocks and cells) + ~2 (spare chunk capacity) ≈ 46
// bytes a truck (BenchmarkMemory: 46.3), plus 4 for each optional
// attribute (package fleet) a truck's device sends, and the heap
// holds O(shards + chunks) objects: the garbage collector has almost nothing
// to scan, however many trucks there are. No per-truck pointer exists.
//
// # Invariants (checked by Check)
//
//   - A slot is live iff its record's id[0] != 0; a live slot appears exactly
//     once in its shard's table and exactly once in the grid cell that
//     contains its coordinates; free slots appear in the free stack only.
//   - A stored position is replaced only by an update whose ts is not older
//     (latest wins by time); older updates are counted as stale and dropped.
//   - Every accepted update stamps its truck with the store's current
//     last-heard epoch (SetEpoch), stale ones included: a truck is alive as
//     long as it reports, whatever its device's clock says. Expire(age)
//     removes trucks whose stamp is age or more epochs old, counted mod
//     HeardEpochs (128): a truck is never removed before its true age, and
//     later only if the caller lets more than 128-age epochs pass between
//     calls.
//   - The index is updated incrementally on every move: a truck that stays in
//     its sub-cell costs nothing, one that changes sub-cell within its cell
//     rewrites its entry (a scan of the cell's block, at most hintMax
//     entries, since loose cells skip it), one that changes cell is moved
//     between two blocks. Nothing is ever rebuilt wholesale on the hot path.
//   - An entry's sub-cell is subOf its record's position, unless its cell
//     is loose; a cell of more than hintMax entries is loose.
//
// # Concurrency
//
// Each shard has its own RWMutex; nothing global is written on the update
// path. Apply groups a batch by shard and applies the groups on up to
// GOMAXPROCS goroutines, each shard under its lock. Point reads take one
// shard's read lock. Nearest takes every shard's read lock for the few
// microseconds it runs; Within streams, holding one shard's read lock only
// while it copies a bounded run of cells, so a slow consumer never blocks
// writers. A streamed truck that moves during the scan may be reported at
// its old or new position or (if it moved from a cell not yet scanned into
// one already scanned) not at all; it is never reported twice.
//
// Queries are exact: k-nearest and Within read only the records whose
// sub-cell meets their search window (a superset of those the window
// admits; the windows are bounded without inverse trigonometry and may err
// wide, never narrow); k-nearest uses haversine distance on a sphere of
// radius geo.EarthRadiusM and prunes cells only with exact box distances or
// the windows, so results equal a brute-force scan (tests check this on
// random fleets, clusters, the antimeridian and the poles).
package store
