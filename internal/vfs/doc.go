// Package vfs is the small filesystem interface through which fleetd
// performs all disk I/O, modelled on pebble's vfs.
//
// # Implementations
//
//   - Default: the os package. SyncDir opens the directory and fsyncs it.
//   - MemFS (NewMem): in memory, with a strict durability model used by
//     crash tests. File data is durable only up to the last File.Sync;
//     directory entries (create, rename, remove) only after FS.SyncDir of
//     their directory. CrashClone returns the state a power cut would
//     leave: durable entries only, each file cut back to its synced
//     contents, optionally keeping a random prefix of unsynced appends
//     (a torn write). Directories created by MkdirAll are durable at
//     once; callers still SyncDir the parent (SyncParent) for real disks.
//   - FaultFS (NewFaultFS): wraps any FS and fails chosen operations:
//     the N-th write/sync/rename, or everything with ENOSPC until Reset.
//     Injected errors are *os.PathError values, like the os package's,
//     so errors.Is(err, syscall.ENOSPC) works.
//
// # Invariants and caveats
//
//   - File.Sync makes a file's bytes durable but not its name; after
//     creating, renaming or removing a file, SyncDir its directory before
//     relying on it (the crash-safety arguments in wal and snapshot do).
//   - File.Truncate does not move the Read/Write offset; code that
//     truncates and then rewrites uses WriteAt with explicit offsets.
//   - O_APPEND is not used by fleetd (WriteAt is not allowed on such files).
//
// # Concurrency
//
// Every FS implementation here is safe for concurrent use. A File may be
// used concurrently through ReadAt, WriteAt, Sync and Stat; Read and
// Write share an offset and need external serialisation.
package vfs
