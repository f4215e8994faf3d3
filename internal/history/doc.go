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
// acknowledged point is either in a run file or in the log, and history's
// memory is the buffer, whatever the fleet's size or the retention.
//
// Replay may give history points it already has (the tail after M
// overlaps runs written later), and devices resend: a point equal to one
// already kept (same truck, ts and every field) is dropped wherever the
// two meet (when a run is written, merged, or read), so duplicates never
// reach an answer.
//
// # Files
//
//	<dir>/<YYYYMMDDHH>/<level>-<seq>.fhr   a run: points of that UTC hour
//	<dir>/<YYYYMMDDHH>/<level>-<seq>.tmp   being written (deleted at open)
//
// A partition holds the points whose ts falls in its hour, in runs. A run
// of level 0 comes from one flush; once a partition has MergeFanIn runs of
// one level they are merged into one run of the next (the inputs are
// removed only after the output is durable; a crash in between leaves
// duplicates that reads and the next merge drop). Partitions older than
// Options.Retention, and the oldest ones while the total exceeds
// Options.MaxDisk, are removed whole, logged and counted.
//
// # Run format (integers little-endian; CRCs are CRC-32C)
//
//	header, 32 bytes
//	| "FLEETHST" | version u32 = 1 | hour u32 (Unix hours) | covers u64 (LSN) | trucks u32 | CRC u32 of 0..27 |
//	blocks, one per truck, in index order
//	| CRC u32 of the rest | uvarint idLen | id | uvarint n | uvarint attrMask | columns |
//	index, trucks × 48 bytes, sorted by (hash, id)
//	| hash u64 (FNV-1a of the ID) | offset u64 | length u32 | points u32 |
//	| minTS u32 | maxTS u32 | minLat i32 | minLon i32 | maxLat i32 | maxLon i32 |
//	trailer, 24 bytes
//	| index offset u64 | points u64 | CRC u32 of the index | "FHRE" |
//
// A block's points are sorted by ts (ties by the other fields), without
// exact duplicates, and stored as columns of varints, so that similar
// values sit together: ts as deltas; lat and lon as deltas of deltas (a
// truck moving steadily costs about one byte per coordinate, a parked one
// exactly one); speed and heading as deltas; for each attribute present in
// the block (attrMask), a presence bit column then its values as deltas.
// Every stored field round-trips exactly.
//
// # Reads
//
// Trail merges the points of every run of the partitions that overlap the
// range, and of the buffers not yet written, finding a truck's block by a
// binary search of each index (read through ReadAt, never loaded whole).
// Within reads the indexes of those partitions, skips the trucks whose
// bounding box or time range misses the query, and tests every point of
// the others: exact, no false positives or negatives. A run whose checksum
// fails is reported (Stats.Corrupt, and the answer's Incomplete flag) and
// skipped; the rest keeps serving.
//
// # Concurrency
//
// Add, Seal, Trail, Within and Stats are safe for concurrent use. Write and
// the merges run on one background goroutine (the engine's); Close waits
// for it.
package history
