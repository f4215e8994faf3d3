// Package outbox is a durable, bounded, on-disk FIFO of events waiting to
// be delivered: what fleetd's alert sinks (package sink) deliver from.
//
// # Contract
//
// Append copies an event into memory and returns at once; it never
// performs I/O and never blocks on the disk or on the consumer. A writer
// goroutine writes what was appended, in the order of Append, and fsyncs
// it (group commit: one write and one fsync for everything appended since
// the last); only then can Next hand the event out. So an event is
// delivered only after it is on disk, and once on disk it is handed out
// again after any crash until the consumer calls Done for it (at least
// once: after a crash, events done since the last checkpoint are handed
// out again, with the same Seq and payload).
//
// What is appended but not yet fsynced (at most MaxStaged bytes, normally
// one fsync's worth, a few milliseconds) is lost by a crash of the
// process or of the machine. Sync closes that window for a caller that
// must not answer before its events are durable: it waits until
// everything appended before it was called is fsynced (never for the
// consumer; callers of one moment share the writer's one fsync; with
// nothing waiting for the disk it costs a mutex and an atomic load). It
// gives up with ErrNotDurable when a write or fsync fails meanwhile
// (the events stay in memory, retried), so a broken disk never hangs
// the caller. Package sink calls it before an update that caused events
// is acknowledged.
//
// Bounds: Append sheds (drops the event, counts it in Stats.Shed and logs
// at most one line a minute) when the bytes on disk plus those waiting
// for the writer would pass MaxBytes, or those waiting for the writer
// alone would pass MaxStaged (a disk that cannot keep up, or that fails:
// a failed write or fsync is retried with backoff, the data kept in
// memory, never dropped once appended while under MaxStaged). The
// consumer holds at most Window events handed out and not Done; Next
// waits beyond that. Memory is therefore O(MaxStaged + Window events),
// however many events wait on disk.
//
// # Order and Done
//
// Next hands events out in Seq order (Seq is dense and increasing). The
// consumer may call Done out of order (package sink delivers several
// trucks in parallel); the cursor, the Seq below which everything is
// done, advances over the done prefix. The cursor is checkpointed about
// once a second, and segments wholly below it are deleted then.
//
// # Files
//
// In Dir:
//
//	0000000000000000.seg   segments, named by the Seq of their first record (16 hex digits)
//	0000000000001f40.seg   a new one is started once the current passes SegmentBytes,
//	…                      and at every Open (the last one is never appended to again)
//	cursor                 | "FLOBXCUR" | cursor u64 | crc u32 |           20 B
//
// A segment is a sequence of records, little-endian:
//
//	| crc u32 | len u32 | seq u64 | key u64 | time i64 | payload (len B) |
//	crc:  CRC-32C (Castagnoli) of everything after it (header rest and payload)
//	key:  the consumer's ordering key (package sink: a hash of the truck ID)
//	time: Unix nanoseconds of the Append
//
// Open scans the last segment and cuts off a torn tail (a record cut
// short or failing its checksum at the end of the file: an append whose
// fsync never returned). The cursor is written to cursor.tmp, fsynced and
// renamed over cursor; a missing or damaged cursor file reads as the first
// segment's first Seq (everything on disk is delivered again). A record
// that fails its checksum before the end of the data is counted in
// Stats.Corrupt and the rest of its segment is skipped.
//
// # Concurrency
//
// Append, Sync, Done, Stats and Close are safe for concurrent use. Next
// and NextBatch must be called from one goroutine at a time (one
// consumer). Append takes one short mutex (the staging buffer); Next and
// Done share another with the writer (positions and the done ring).
package outbox
