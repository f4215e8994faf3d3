// Package history keeps every accepted position update — late ones that
// did not move the latest position included — compressed on disk in hour
// partitions, and answers a truck's trail over a time range and which
// trucks were inside an area during one.
//
// # Write path and durability
//
// History is a consumer of the engine's write-ahead log. The engine hands
// every acknowledged batch to Add while it still holds the batch's log
// position; Add appends the points to a bounded in-memory buffer. When the
// buffer is full (Options.BufferBytes) or old (Options.FlushEvery), the
// engine seals it at a log position M — with every record up to M added
// (it takes the same barrier a snapshot takes) — and Write turns it into
// one run file per hour partition, fsynced, each stamped "covers M". The
// engine keeps the log from min(snapshot, Covered())+1, and on startup
// replays that tail into history as well as into the store. So an
// acknowledged point is either in a run file or in the log.
//
// Memory is bounded by Options.BufferBytes, whatever the fleet's size or
// the retention: the active buffer is sealed at BufferBytes, one sealed
// buffer is written at a time, and a batch that would take the active one
// past twice BufferBytes while the writer is still busy (counting the
// batches in flight, which reserve their room before they are logged) is
// held back by Reserve (called by the engine before each batch) until the
// writer catches up: a slow disk slows ingest, it never grows memory, and
// neither do many connections or large batches (the engine cuts a batch
// into pieces of engine.ApplyChunk updates). Stats.Waits counts
// those waits and Stats.WaitSeconds sums their time (what history cost
// ingest in stalls), Stats.Buffered is the backlog. A written buffer's memory is
// reused by the next one.
//
// Replay may give history points it already has (the tail after M
// overlaps runs written later), and devices resend: a point equal to one
// already kept (same truck, ts and every field) is dropped wherever the
// two meet (when a run is written, merged, or read), so duplicates never
// reach an answer.
//
// # Files
//
//	<dir>/COVERED                          the log position written through
//	<dir>/<YYYYMMDDHH>/<level>-<seq>.fhr   a run: points of that UTC hour
//	<dir>/<YYYYMMDDHH>/*.tmp               being written (deleted at open)
//	<dir>/quarantine/<YYYYMMDDHH>-<run>    damaged runs moved aside by Repair
//
// COVERED is two 32-byte slots, | "FHCOVER1" | position u64 | zeros |
// CRC-32C u32 |, overwritten in turn in place (one small write a flush,
// where creating and renaming a file cost about 200 us of CPU), so that a
// torn write loses only the slot being written; the mark is the larger
// valid slot. fleetd before the slots wrote a decimal number, which is
// read and replaced by the first write. An unreadable mark replays the
// whole write-ahead log into history (duplicates are dropped).
//
// A partition holds the points whose ts falls in its hour, in runs. A run
// of level 0 comes from one flush; once a partition has Options.MergeFanIn runs of
// one size tier they are merged into one run of the next (the inputs are
// removed only after the output is durable; a crash in between leaves
// duplicates that reads and the next merge drop). Full flushes (level 0,
// a quarter of Options.BufferBytes' points or more: the hour being
// filled) wait instead for Options.FirstMergeFanIn of them (MergeFanIn²)
// and are merged at once, skipping the first tier: at a million trucks a
// flush holds about one point a truck, and merging 16 of them rewrote
// every point while combining almost none (BenchmarkMergeFirst: 225 →
// 150 CPU ns a point over the two tiers). A lookup of the hour being
// filled then reads up to 255 of them (BenchmarkTrailFilling: 0.87 ms,
// 0.14 with 16 runs merged at a time). Partitions older than
// Options.Retention are removed whole, logged and counted. Over
// Options.MaxDisk (checked after every write and merge), the older
// partitions are compacted first (an hour still being filled takes many
// times its final size: its first runs hold about one point per truck at
// a million trucks), then the oldest removed whole, logged and counted.
// The newest is never compacted for it nor removed: an hour that alone
// takes more than MaxDisk is logged, and stays until it can be.
//
// # Run format (integers little-endian; CRCs are CRC-32C)
//
//	header, 32 bytes
//	| "FLEETHST" | version u32 | hour u32 (Unix hours) | covers u64 (LSN) | blocks u32 | CRC u32 of 0..27 |
//	blocks, in index order
//	version 4:    | CRC u32 of the rest | uvarint trucks | trucks × (shared u8 | suffixLen u8 | suffix | uvarint n) | columns |
//	version 2, 3: | CRC u32 of the rest | uvarint trucks | trucks × (uvarint idLen | id | uvarint n) | columns |
//	version 1:    | CRC u32 of the rest | uvarint idLen | id | uvarint n | columns (legacy) |
//	index, blocks × 48 bytes, sorted by (hash, id) of each block's first truck
//	| hash u64 (FNV-1a of the ID) | offset u64 | length u32 | points u32 |
//	| minTS u32 | maxTS u32 | minLat i32 | minLon i32 | maxLat i32 | maxLon i32 |
//	trailer, 24 bytes
//	| index offset u64 | points u64 | CRC u32 of the index | "FHRE" |
//
// Trucks lie in (hash, id) order across a run's blocks. A version 4 run
// is a version 2 run whose blocks front-code their trucks' IDs: each is
// the bytes it shares with the block's previous truck's ID (none for the
// first) and the rest. At a million trucks a flush holds about a point a
// truck, and the ID was half of a level-0 run's bytes; in hash order a
// fleet's IDs still share their stem ("truck-0…", an IMEI's type code):
// 33 → 27 bytes a point on the benchmark fleet. fleetd writes grouped
// runs as version 4 and reads 2 as well; a fleetd older than version 4
// refuses a version 4 run as damaged (Repair quarantines it), so do not
// downgrade over a history directory it wrote. A version 3 run
// (what compaction writes) has one truck per block, so that a finished
// hour's index bounds every truck's points on its own; version 1 runs,
// from fleetd before version 2, are read as they are and rewritten by
// the next compaction of their hour. A version 2 run
// (flushes and the tiered merges of a filling hour, where trucks have a
// few points each: about one a truck in a level-0 run at a million
// trucks) groups consecutive trucks into blocks of about groupPoints
// points: a block and an index entry per truck made such runs 88 bytes a
// point, and most of the writer's time; grouped, they are about 25. A
// lookup in a grouped run reads the blocks whose first hash is the
// truck's and the one before them.
//
// A block's columns hold its trucks' points one truck after another, each
// truck's sorted by ts (ties by the other fields) without exact
// duplicates, as columns of varints, so that similar values sit together:
// ts as deltas (a truck's first point's, but the block's first, as a
// signed delta from the previous truck's first); speed and heading as
// deltas (zigzag) across the block; lat and lon as residuals against the
// delta predicted from the previous one scaled by speed·dt (a truck moving
// steadily costs about one byte per coordinate, a parked one zero), each
// truck's starting from the previous truck's first point (in version 1,
// the one truck's second point is predicted from its first as a delta).
// The columns start with a header, uvarint attrMask<<6 + raw<<5 + runs
// (version 1: attrMask<<5 + runs, never raw). Each of the five position
// columns (ts, speed, heading, lat, lon) is written either as n varints
// or, when that is smaller (bit c of runs), as runs — (varint value,
// varint length-1) pairs. With raw set (the blocks a flush writes, and a
// merge's blocks whose trucks have under two points each on average: at a
// million trucks, the first merges of a filling hour, where columns save a
// fifth of the bytes for a third more CPU; BenchmarkMergeSparse) the
// position columns are instead n fixed-width records, | ts u32 | lat i32
// | lon i32 | speed u16 | heading u16 |. Then, for each attribute present
// in the block (attrMask), a header byte (bit 0: every point has it, bit
// 1: its values are runs), a presence bit column unless every point has
// it, and its values as deltas, plain or runs (version 1: the bit column
// and plain deltas, no header). So a parked truck reporting on a steady
// period, or an attribute that does not change (ignition on, a steady
// voltage), costs a few bytes a block whatever its length. Every stored
// field round-trips exactly. On the simulator's fleet, compacted: 3.8 bytes a
// point moving, 0.8 parked; 6.1 with a Teltonika tracker's seven
// attributes besides (BenchmarkDiskBytesPerPoint).
//
// # Reads
//
// Walk (and Trail, which collects it) goes through the range one hour
// partition at a time: the truck's block in each run of the hour, found by
// a binary search of the run's index (read through ReadAt, never loaded
// whole), merged with the hour's buffered points, sorted, without
// duplicates. Its memory is one hour of one truck, however long the range.
// Within reads the indexes of the partitions in range, skips the blocks
// whose bounding box or time range misses the query, and tests every point
// of the others: exact, no false positives or negatives. A compacted
// hour's blocks are single trucks; a filling hour's grouped blocks span
// their trucks' boxes, so Within over the current hour reads most of it. Export merges an
// hour's runs truck by truck (the merge's cursors), reading each run
// sequentially.
//
// No answer holds a point older than the retention (the start of the
// hour Options.Retention ago), whether it is still buffered, in a run not
// yet dropped, or arrived late: the range is clipped there.
//
// Readers take a reference to each run they read: a merge or a retention
// drop that replaces a run only retires it, and its file is closed and
// removed when the last reader lets go, so a slow client never holds up
// the writer (and through it, ingest).
//
// A run whose checksum fails is logged and counted once (Stats.Corrupt),
// every answer that needed it says so (Answer.Incomplete), and the rest
// keeps serving. Repair, on a stopped server, checks every run whole and
// moves the damaged ones to the quarantine.
//
// # Concurrency
//
// Add, AddReserved, Reserve, Release, Seal, Walk, Trail, Within, Export
// and Stats are safe for concurrent use. Write, Housekeep and the merges run on one goroutine (the
// engine's history writer); Close comes after it has stopped.
package history
