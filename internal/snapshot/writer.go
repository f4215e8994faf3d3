package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"

	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

// Info describes a committed snapshot.
type Info struct {
	Name  string  // base name, snap-<LSN>.fsnap
	Path  string  // dir joined with Name
	LSN   wal.LSN // the snapshot reflects every WAL record with LSN <= LSN
	Count uint64  // entries
	Bytes int64   // file size
}

// ErrDone is returned by Writer methods after Commit or Abort.
var ErrDone = errors.New("snapshot: writer already committed or aborted")

// Writer streams entries into a new snapshot file. Memory use is constant
// (one block of at most 4096 entries plus a 1 MiB write buffer) whatever
// the number of entries. A Writer is not safe for concurrent use; call
// Add/AddBatch from one goroutine, then exactly one of Commit or Abort.
type Writer struct {
	fs   vfs.FS
	dir  string
	lsn  wal.LSN
	tmp  string // path of the temp file
	f    vfs.File
	out  *bufio.Writer
	done bool
	err  error // first write error; sticky

	// Current block: entries with ID == nil and their IDs packed in ids,
	// entry i's ID being ids[idEnd[i-1]:idEnd[i]].
	ents    []wal.Entry
	ids     []byte
	idEnd   []int
	payload []byte // encoded block, reused

	count     uint64
	blocks    uint32
	blocksCRC uint32
	bytes     int64
}

// Create starts a snapshot covering WAL records up to and including lsn,
// written to dir/snap-<lsn>.fsnap.tmp until Commit. The caller must make
// sure the entries it adds reflect at least every record <= lsn (see
// doc.go on fuzzy snapshots).
func Create(fsys vfs.FS, dir string, lsn wal.LSN) (*Writer, error) {
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, ioErr("mkdir", dir, err)
	}
	w := &Writer{fs: fsys, dir: dir, lsn: lsn, tmp: filepath.Join(dir, FileName(lsn)+tmpSuffix)}
	f, err := fsys.Create(w.tmp)
	if err != nil {
		return nil, ioErr("create", filepath.Base(w.tmp), err)
	}
	w.f = f
	w.out = bufio.NewWriterSize(f, 1<<20)
	hdr := header{lsn: lsn}.encode() // count is patched in by Commit
	w.write(hdr[:])
	if w.err != nil {
		w.Abort()
		return nil, w.err
	}
	return w, nil
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.out.Write(b); err != nil {
		w.err = ioErr("write", filepath.Base(w.tmp), err)
	}
	w.bytes += int64(len(b))
}

// Add appends one entry, copying it (the caller may reuse e and e.ID).
// Only KindUpdate entries are allowed: a snapshot is a state, not a log.
func (w *Writer) Add(e *wal.Entry) error {
	if w.done {
		return ErrDone
	}
	if w.err != nil {
		return w.err
	}
	if e.Kind != wal.KindUpdate {
		return fmt.Errorf("snapshot: entry %q has kind %v; a snapshot holds only updates", e.ID, e.Kind)
	}
	c := *e
	c.ID = nil
	w.ents = append(w.ents, c)
	w.ids = append(w.ids, e.ID...)
	w.idEnd = append(w.idEnd, len(w.ids))
	if len(w.ents) == blockEntries {
		w.flushBlock()
	}
	return w.err
}

// AddBatch appends entries in order; see Add.
func (w *Writer) AddBatch(entries []wal.Entry) error {
	for i := range entries {
		if err := w.Add(&entries[i]); err != nil {
			return err
		}
	}
	return nil
}

// flushBlock encodes and writes the current block.
func (w *Writer) flushBlock() {
	if len(w.ents) == 0 {
		return
	}
	start := 0
	for i := range w.ents {
		w.ents[i].ID = w.ids[start:w.idEnd[i]]
		start = w.idEnd[i]
	}
	w.payload = wal.AppendUpdates(w.payload[:0], w.ents)
	if len(w.payload) > maxBlock {
		panic("BUG: snapshot: block exceeds maxBlock") // 4096 entries cannot
	}
	var hdr [blockHeader]byte
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(len(w.payload)))
	binary.LittleEndian.PutUint32(hdr[0:4], blockCRC(hdr[4:8], w.payload))
	w.write(hdr[:])
	w.write(w.payload)
	w.blocksCRC = crc32.Update(w.blocksCRC, castagnoli, hdr[:])
	w.blocksCRC = crc32.Update(w.blocksCRC, castagnoli, w.payload)
	w.blocks++
	w.count += uint64(len(w.ents))
	clear(w.ents) // drop ID references
	w.ents, w.ids, w.idEnd = w.ents[:0], w.ids[:0], w.idEnd[:0]
}

// Commit finishes the file and publishes it atomically: write the last
// block and the trailer, patch the entry count into the header, fsync the
// file, rename it to snap-<lsn>.fsnap (replacing a snapshot of the same
// LSN) and fsync the directory. Only after Commit returns nil is the
// snapshot durable. On error the temp file is removed.
func (w *Writer) Commit() (Info, error) {
	if w.done {
		return Info{}, ErrDone
	}
	w.flushBlock()
	tr := trailer{count: w.count, lsn: w.lsn, blocksCRC: w.blocksCRC, blocks: w.blocks}.encode()
	w.write(tr[:])
	if w.err == nil {
		if err := w.out.Flush(); err != nil {
			w.err = ioErr("write", filepath.Base(w.tmp), err)
		}
	}
	if w.err == nil {
		hdr := header{lsn: w.lsn, count: w.count}.encode()
		if _, err := w.f.WriteAt(hdr[:], 0); err != nil {
			w.err = ioErr("write", filepath.Base(w.tmp), err)
		}
	}
	if w.err == nil {
		if err := w.f.Sync(); err != nil {
			w.err = ioErr("fsync", filepath.Base(w.tmp), err)
		}
	}
	if w.err != nil {
		err := w.err
		w.Abort()
		return Info{}, err
	}
	w.done = true
	if err := w.f.Close(); err != nil {
		w.fs.Remove(w.tmp)
		return Info{}, ioErr("close", filepath.Base(w.tmp), err)
	}
	name := FileName(w.lsn)
	path := filepath.Join(w.dir, name)
	if err := w.fs.Rename(w.tmp, path); err != nil {
		w.fs.Remove(w.tmp)
		return Info{}, ioErr("rename", filepath.Base(w.tmp), err)
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		// The rename may or may not survive a power cut; the file itself
		// is complete either way, so leave it for Load to judge.
		return Info{}, ioErr("fsync dir", w.dir, err)
	}
	return Info{Name: name, Path: path, LSN: w.lsn, Count: w.count, Bytes: w.bytes}, nil
}

// Abort abandons the snapshot and removes the temp file. It is a no-op
// after Commit or a previous Abort (returning ErrDone).
func (w *Writer) Abort() error {
	if w.done {
		return ErrDone
	}
	w.done = true
	w.f.Close()
	if err := w.fs.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ioErr("remove", filepath.Base(w.tmp), err)
	}
	return nil
}

// ioErr wraps an I/O error as "snapshot: <op> <name>: <errno text>",
// dropping the *fs.PathError layer but keeping the cause for errors.Is.
func ioErr(op, name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("snapshot: %s %s: %w", op, name, err)
}
