// Package engine is the one place where an update is applied: durability
// log, then store (and index), then the consumers that watch changes. The
// HTTP API and the simulator talk to an Engine, never to the store's
// writers directly.
//
// Invariants:
//   - An update is visible to queries only after it has been made as
//     durable as the configured fsync policy promises, and Apply returns
//     success only then; on an I/O error nothing of the batch is applied and
//     Apply returns the error (the API answers 503).
//   - Updates of one truck within a batch are applied in batch order;
//     latest-wins by timestamp decides between batches.
//
// Concurrency: every method is safe for concurrent use. Apply calls from
// many goroutines share fsyncs (group commit) and apply in parallel on the
// store's shards.
package engine
