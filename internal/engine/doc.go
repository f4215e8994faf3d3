// Package engine is the one place where an update is applied: durability
// log, then store (and index), then the consumers that watch changes. The
// HTTP API and the simulator talk to an Engine, never to the store's
// writers directly.
//
// Invariants:
//   - An update is visible to queries only after it has been made as
//     durable as the configured fsync policy promises, and Apply returns
//     success only then; on an I/O error nothing of the batch is applied and
//     Apply returns the error (the API answers 503). A batch of more than
//     ApplyChunk updates is that, piece by piece: the pieces before a
//     failed one stay applied, and the Result returned with the error
//     counts them.
//   - Updates of one truck within a batch are applied in batch order;
//     latest-wins by timestamp decides between batches. An update older
//     than the stored position (stale) is still logged, counted and keeps
//     its truck alive: it is data (for history), not an error.
//   - With Options.History, every update Apply logs is added to history
//     under the same shared lock, so that the history writer, which seals
//     history's buffer at the log's last record under the exclusive lock,
//     knows every record up to that mark is in the sealed buffer. The log
//     is truncated only below both the oldest kept snapshot and history's
//     covered mark, and recovery replays from the lower of the two: the
//     store takes the records after its snapshot, history those after its
//     mark. An acknowledged update is therefore in history after any
//     crash. A snapshot and history's runs are written only after the log
//     records they cover are durable (wal.Log.Sync: a no-op under fsync
//     always), so that with --fsync interval or never a power cut cannot
//     leave the log ending below a mark that the restarted log's new
//     records would then hide under. Apply reserves a batch's room in
//     history's buffer before logging it (history.Reserve), waiting when
//     the writer is behind, and cuts batches into pieces of ApplyChunk,
//     so that history's memory stays bounded however many batches are in
//     flight and however large.
//   - Expiry (Options.TTL) counts from when the engine last heard from a
//     truck, by its own clock, in last-heard epochs of TTL/32 that the
//     store keeps in each record: never sooner than the TTL, at most two
//     epochs later. An expiry pass is exclusive against Apply, so that the
//     log records each expiry between the same updates as it happened and
//     replay reaches the same fleet; it pauses ingest for one pass over the
//     records and one fsync, once an epoch. Recovered trucks count as heard
//     at startup.
//
// Concurrency: every method is safe for concurrent use. Apply calls from
// many goroutines share fsyncs (group commit) and apply in parallel on the
// store's shards.
package engine
