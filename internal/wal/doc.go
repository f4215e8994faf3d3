// Package wal is fleetd's write-ahead log: an append-only sequence of
// checksummed records in segment files, written with group commit, plus
// the compact codec for batches of GPS updates that most records carry.
//
// # Files
//
// A log is a directory of segment files named after the LSN of their
// first record, zero-padded so that names sort like LSNs:
//
//	wal-00000000000000000001.log   records 1 .. 40311
//	wal-00000000000000040312.log   records 40312 .. (active segment)
//
// An LSN is the 1-based ordinal of a record in the whole log (not a byte
// offset): consecutive records have consecutive LSNs, so a segment holds
// exactly next.first - first records. The active segment is rotated once
// a group commit leaves it at or above Options.SegmentSize (64 MiB).
//
// # Record format
//
// A segment is a sequence of records with no padding and no file header:
//
//	+-----------+-----------+--------+---------------------+
//	| CRC-32C   | length    | type   | payload             |
//	| 4 bytes   | 4 bytes   | 1 byte | length bytes        |
//	| uint32 LE | uint32 LE |        |                     |
//	+-----------+-----------+--------+---------------------+
//	             \_______________ CRC covers _____________/
//
// The CRC (Castagnoli) covers length, type and payload. length is at
// most MaxPayload (16 MiB). Type 0 is invalid, so zero-filled space never
// parses as a record; type 1 (TypeUpdates) is an update batch, other
// types are free for the caller. Each group commit appends the records of
// all concurrent Appends back to back in ONE write.
//
// # Update batch codec
//
// AppendUpdates encodes a batch of Entries; UpdateDecoder and
// DecodeUpdates read it back without allocating:
//
//	batch  := version=1 (1 byte) | count (uvarint) | baseTS (uvarint) | entry*count
//	entry  := head (uvarint: shared<<2 | kind) | suffixLen (uvarint) | suffix
//	          [ if kind == update or update+attrs:
//	            lat (4, int32 LE) | lon (4, int32 LE) |
//	            TS-baseTS (uvarint) | speed (uvarint) | heading (uvarint) ]
//	          [ if kind == update+attrs:
//	            mask (uvarint, bit a = fleet.Attr a present) |
//	            value (varint, zigzag) for each set bit, lowest first ]
//	          [ if kind == delete or expire:
//	            TS (uvarint): delete only if the stored TS <= TS ]
//
// shared is the length of the prefix the ID shares with the previous
// entry's ID; kind is 0 update, 1 delete, 2 expire, 3 update with
// optional attributes (package fleet: altitude…), decoded as an Entry of
// KindUpdate with Attrs set, so that an update without attributes costs
// no byte for them (binaries older than kind 3 refuse such logs as
// malformed rather than drop the attributes); baseTS
// is the smallest TS among the batch's updates. An update of an ID like
// "truck-0123456" takes head 1 + suffixLen 1 + suffix ~6-8 + position 8 +
// TS 1 + speed 1-2 + heading 1-2 ≈ 20-23 bytes, and the 9-byte record
// header is shared by the whole batch: 10,000 random trucks in random
// order measure 23.9 bytes per update on disk (target: at most 32;
// sorting a batch by ID shortens suffixes). Decoding
// validates everything (kind, prefix length, bounds, uint16/uint32
// ranges, attribute masks and ranges, no trailing bytes) and returns
// errors wrapping ErrMalformed.
//
// # Fsync policies and what they risk
//
//	FsyncAlways (default, "always"): Append returns after the fsync that
//	    covers its record. Nothing acknowledged is lost on kill -9, kernel
//	    crash or power cut.
//	FsyncInterval(d) ("interval=10ms"): Append returns after write(2); the
//	    flusher fsyncs every d. kill -9 loses nothing (the page cache has
//	    the data); a power cut or kernel crash can lose up to d (plus one
//	    fsync duration) of acknowledged records.
//	FsyncNever ("never"): Append returns after write(2); fsync only at
//	    segment rotation, Close and every 1 MiB written (maxRetained).
//	    kill -9 loses nothing; a power cut can lose everything written
//	    since the last of those fsyncs.
//
// # Crash safety: why an acknowledged record survives (FsyncAlways)
//
//  1. Append returns success only after the flusher's write of the whole
//     group and a successful fsync of the segment file.
//  2. A segment's directory entry is made durable (SyncDir) before any
//     record in it is written: Open syncs the directory after creating
//     the first segment, rotation syncs it after creating the next one;
//     Open also fsyncs the parent of the log directory.
//  3. Rotation fsyncs the old segment before switching, so every
//     non-last segment is complete; only the last segment can end in a
//     torn write, and that tail holds only unacknowledged records.
//  4. Recovery never truncates a record that is followed by a valid
//     record (see below), so a bit flip inside acknowledged data is
//     reported, not silently cut off.
//  5. A failed fsync is never ignored or retried blindly: the kernel may
//     have dropped the dirty pages, so the flusher truncates the segment
//     back to the end of the last successful fsync, rewrites the
//     acknowledged-but-unsynced bytes it retains in memory (interval and
//     never modes) and fsyncs again. Until that repair succeeds every
//     Append fails. (The retained bytes are bounded by maxRetained, 1 MiB
//     plus one group: past it the flusher fsyncs early, in both modes.)
//
// # Recovery (Open)
//
// Open reads and verifies every segment and checks that each segment
// starts at the LSN where the previous one ended. A bad record in the
// last segment is a torn tail, and is truncated (reported through
// Options.OnTailTruncated with file, offset and bytes dropped), when its
// header is zero-filled or no complete, checksum-valid record starts
// anywhere after it. Anything else — a bad record followed by a valid
// one, a bad record in an earlier segment, missing or overlapping LSNs —
// returns a *CorruptError{File, Offset, Reason}. Repair(fs, dir) then
// cuts the log at that offset deliberately and deletes later segments.
// Empty non-last segments (left by a rotation whose directory fsync
// failed) are deleted.
//
// Caveat: a filesystem that, on power cut, persists a later page of the
// last unsynced write but not an earlier one can make a torn tail look
// like mid-log corruption; Open then refuses to start and Repair (which
// in that case cuts only unacknowledged records) is needed.
//
// # Errors
//
// A failed write or fsync fails every Append of its group with an error
// such as "wal: fsync wal-00000000000000000001.log: no space left on
// device" (errors.Is(err, syscall.ENOSPC) holds). The segment is cut back
// to its last good offset, the group's LSNs are reused by later records,
// and later Appends are attempted normally, so ingest resumes once the
// disk has room. An Append that failed may still appear in the log after
// a crash (the error means "not acknowledged").
//
// # Concurrency contract
//
//   - Append/AppendRecord: any number of goroutines. Records are copied
//     into the pending group under Log.mu (checksums are computed before
//     taking it); one flusher goroutine writes and fsyncs each group and
//     releases its waiters. A group holds everything appended while the
//     previous group was in flight. Append blocks while more than
//     Options.MaxPending bytes are waiting.
//   - LSNs are assigned by the flusher in write order, so they are dense
//     even when a group fails.
//   - Replay, TruncateBefore, Stats, NextLSN, FirstLSN: safe concurrently
//     with Append. Replay must not overlap TruncateBefore of segments it
//     still has to read. Replay is meant for startup, before appends.
//   - Sync: safe concurrently with Append; the flusher fsyncs what it has
//     written, between groups, so a busy log does not starve it. Callers
//     that write a mark "covered up to LSN n" elsewhere (snapshots,
//     history) call it first.
//   - Close: once; waits for pending groups, fsyncs, stops the flusher
//     (no goroutine outlives Close).
//
// # Typical wiring
//
//	res, err := snapshot.Load(vfs.Default, snapDir, func(e *wal.Entry) error { apply(e); return nil })
//	log, err := wal.Open(vfs.Default, walDir, wal.Options{Fsync: policy, OnTailTruncated: logIt})
//	err = log.Replay(res.LSN+1, func(lsn wal.LSN, typ byte, p []byte) error {
//		if typ != wal.TypeUpdates {
//			return fmt.Errorf("unknown record type %d at LSN %d", typ, lsn)
//		}
//		return wal.DecodeUpdates(p, apply) // apply(e *wal.Entry): e valid during the call
//	})
//	// serving: one Append per ingest batch, then apply the batch
//	lsn, err := log.Append(wal.AppendUpdates(buf[:0], batch))
package wal
