// Package outbox is a durable, bounded, on-disk FIFO of events waiting to
// be delivered, read by one or more lanes: what fleetd's alert sinks
// (package sink) deliver from.
//
// # Contract
//
// Append copies an event into memory and returns at once; it never
// performs I/O and never blocks on the disk or on the consumer. A writer
// goroutine writes what was appended, in the order of Append, and fsyncs
// it (group commit: one write and one fsync for everything appended since
// the last, whichever lanes the events belong to); only then can Next
// hand the event out. So an event is delivered only after it is on disk,
// and once on disk it is handed out again after any crash until the
// consumer calls Done for it (at least once: after a crash, events done
// since the last checkpoint are handed out again, with the same Seq and
// payload).
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
// memory, never dropped once appended while under MaxStaged). Each
// lane's consumer holds at most Window events handed out and not Done;
// its Next waits beyond that. Memory is therefore O(MaxStaged + Lanes ×
// (Window events + a 256 KiB read buffer)), however many events wait on
// disk. The writer lets a staging buffer over 1 MiB go once a flush uses
// under a quarter of it (a burst is over), and Lane.Release lets a lane's
// read buffer go while its consumer does not read (a receiver backing
// off), so an idle or stuck outbox holds far less.
//
// # Lanes, order and Done
//
// An outbox has Options.Lanes readers (default 1). Lane i hands out the
// events whose key % Lanes is i, in Seq order (Seq is dense and
// increasing over the whole outbox, so a lane's Seqs increase with gaps);
// it reads every record of the one log and skips the other lanes' (they
// are in the page cache: the writer just wrote them, or another lane just
// read them). Each lane has its own read position, its own window and its
// own cursor, the Seq below which every record of the lane is done: a
// lane whose consumer stops calling Done (a receiver refusing one event
// for good) holds its window and its cursor and nothing of the other
// lanes, which read and deliver on. Its consumer may call Done out of
// order (package sink: a batch acknowledged part way); the cursor
// advances over the lane's done prefix (to where its read position is
// when nothing handed out is left). Outbox.Next, NextBatch and Done are
// lane 0's (with one lane: the whole outbox).
//
// The lanes' cursors are checkpointed about once a second, and segments
// wholly below the lowest are deleted then. So a stuck lane keeps on disk
// every segment from its oldest undone event on, the other lanes' events
// in them too: the disk bound (MaxBytes, shared by the lanes) is reached
// sooner than if the lanes had their own files, and then every lane's
// new events are shed. Lane.Pins tells a consumer that its lane alone
// is what keeps the outbox over half full (package sink then gives its
// refused events up early). That is the price of the one fsync per group
// commit (with a file a lane, each batch that touched k lanes cost k
// fsyncs, each a device cache flush; package sink measured it).
//
// Stats.Depth counts the events appended and not Done: exact for those
// appended since Open and for those on disk at Open that their lane has
// read; for the rest of what a restart found on disk (not yet read by a
// lane), each lane counts 1/Lanes of the Seqs between its read position
// and the end of what was on disk (exact with one lane; for several, an
// estimate that is exact once every lane has read past what was there).
// Stats.Oldest is the Append time of the oldest event any lane handed
// out and has not done (zero: none).
//
// # Files
//
// In Dir:
//
//	0000000000000000.seg   segments, named by the Seq of their first record (16 hex digits)
//	0000000000001f40.seg   a new one is started once the current passes SegmentBytes,
//	…                      and at every Open (the last one is never appended to again)
//	cursor                 the lanes' cursors, in one of two formats:
//	  one lane:            | "FLOBXCUR" | cursor u64 | crc u32 |                    20 B
//	  several lanes:       | "FLOBXCR2" | n u32 | cursor u64 × n | crc u32 |   16+8n B
//	                       crc: CRC-32C of everything before it
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
// fsync never returned). The cursors are written to cursor.tmp, fsynced
// and renamed over cursor; a missing or damaged cursor file reads as the
// first segment's first Seq for every lane (everything on disk is
// delivered again). A file of another number of cursors than Lanes (the
// one-cursor file of an older fleetd's outbox, or a change of Lanes)
// gives every lane the lowest of them (what a lane did beyond it is
// delivered again). With one lane the one-cursor format is written, so an
// older fleetd reads the outbox too. A record that fails its checksum
// before the end of the data is skipped with the rest of its segment by
// every lane (each lane checks every record's checksum, so they agree),
// counted once in Stats.Corrupt.
//
// # Concurrency
//
// Append, Sync, Done, Stats and Close are safe for concurrent use. A
// lane's Next and NextBatch must be called from one goroutine at a time
// (one consumer a lane; the lanes in parallel). Append takes one short
// mutex (the staging buffer); the lanes' Next and Done share another with
// the writer (positions, windows), taken once a record handed out (the
// skipped records are scanned without it) and once a Done.
package outbox
