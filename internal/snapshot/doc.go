// Package snapshot writes and loads point-in-time copies of the whole
// fleet state, so that startup replays only the WAL written since.
//
// # Files
//
// A snapshot directory holds files named after the WAL LSN they cover,
// zero-padded so names sort like LSNs:
//
//	snap-00000000000001200000.fsnap        committed
//	snap-00000000000001350000.fsnap        committed (newest)
//	snap-00000000000001500000.fsnap.tmp    being written (or abandoned)
//
// "Covers LSN n" means the state reflects every WAL record with LSN <= n;
// recovery loads it and replays the WAL from n+1.
//
// # Format (all integers little-endian, CRCs are CRC-32C/Castagnoli)
//
//	header, 36 bytes
//	+----------+---------+---------+---------+---------+---------+
//	| "FLEETSNP"| version | flags=0 | LSN     | count   | CRC     |
//	| 8 bytes  | u32 = 1 | u32     | u64     | u64     | u32     |
//	+----------+---------+---------+---------+---------+---------+
//	                                          CRC covers bytes 0..31
//	block, repeated (at most 4096 entries each)
//	+---------+---------+-------------------------------------+
//	| CRC     | length  | payload: a wal update batch         |
//	| u32     | u32     | (wal.AppendUpdates, KindUpdate only)|
//	+---------+---------+-------------------------------------+
//	            \___ CRC covers length + payload ___________/
//	trailer, 36 bytes (the last 36 bytes of the file)
//	+-----------+---------+---------+------------+---------+---------+
//	| "FLEETEND"| count   | LSN     | blocks CRC | blocks  | CRC     |
//	| 8 bytes   | u64     | u64     | u32        | u32     | u32     |
//	+-----------+---------+---------+------------+---------+---------+
//	  blocks CRC covers every byte between header and trailer;
//	  the last CRC covers trailer bytes 0..31
//
// Entries are wal.Entry values encoded with the WAL's batch codec (IDs
// prefix-compressed within a block), about 22-24 bytes per truck: one
// million trucks make a ~23 MB file.
//
// # Invariants
//
//   - A file named snap-*.fsnap was complete and fsynced before it got
//     that name; temp files never have it.
//   - header.count == trailer.count == sum of the block batch counts;
//     header.LSN == trailer.LSN == the LSN in the file name.
//   - Load never calls fn for a snapshot that fails verification, so
//     falling back to an older snapshot never mixes two states.
//
// # Crash safety
//
// Writer streams to snap-<LSN>.fsnap.tmp; Commit writes the trailer,
// patches the count into the header, fsyncs the file, renames it to its
// final name and fsyncs the directory. A crash before the rename leaves
// only a temp file (ignored by Load, deleted by Prune); after the
// directory fsync the snapshot is durable. A snapshot that is damaged
// later (bit rot, a truncated copy) fails its checksums and Load falls
// back to the previous one, reporting which file was skipped and why.
//
// Falling back needs the WAL records after the OLDER snapshot, so the
// WAL must be truncated only up to the oldest kept snapshot:
//
//	info, err := w.Commit()
//	res, err := snapshot.Prune(fs, dir, 2)     // keep newest 2
//	err = log.TruncateBefore(res.KeepWALFrom)  // oldest kept LSN + 1
//
// # Fuzzy snapshots
//
// The engine may iterate its store while updates keep being applied, so
// an entry can be newer than the snapshot's LSN. That is safe as long as
// WAL records are blind per-ID writes (set position, delete) replayed in
// LSN order from LSN+1: for each ID the final state is that of its last
// record, or the snapshot's value if no record after LSN touches it. The
// LSN passed to Create must be taken BEFORE the iteration starts
// (every record <= LSN applied to the store).
//
// # Concurrency contract
//
// A Writer belongs to one goroutine (typically a background snapshotter);
// Add copies entries, so the caller may reuse them. Load, Verify, List
// and Prune are plain functions, safe to call concurrently with a Writer
// working on a newer LSN; run one Writer per directory at a time.
package snapshot
