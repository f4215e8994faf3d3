package snapshot

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

// Skipped names a snapshot that Load passed over and why.
type Skipped struct {
	Name   string
	Reason string
}

// LoadResult describes what Load did.
type LoadResult struct {
	Info              // the snapshot loaded; zero if none exists
	Skipped []Skipped // newer snapshots found invalid, newest first
}

// ErrNoValidSnapshot is returned (wrapped) by Load when snapshot files
// exist but none of them is valid: starting empty would silently drop
// state, so the caller must decide.
var ErrNoValidSnapshot = errors.New("snapshot: no valid snapshot")

// List returns the committed snapshot files in dir, newest (highest LSN)
// first, without verifying them (Count is not filled in).
func List(fsys vfs.FS, dir string) ([]Info, error) {
	names, err := fsys.List(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, ioErr("list", dir, err)
	}
	var out []Info
	for _, n := range names {
		if lsn, ok := parseName(n, false); ok {
			info := Info{Name: n, Path: filepath.Join(dir, n), LSN: lsn}
			if st, err := fsys.Stat(info.Path); err == nil {
				info.Bytes = st.Size()
			}
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return cmp.Compare(b.LSN, a.LSN) })
	return out, nil
}

// Load finds the newest valid snapshot in dir and calls fn for each of
// its entries, in file order. e and e.ID are valid only during the call.
// Each candidate is verified completely (header, every block checksum,
// every entry decoded, trailer, counts) BEFORE fn sees any entry, so a corrupt or truncated
// newest snapshot is skipped (and reported in LoadResult.Skipped) without
// feeding fn a partial state. With no snapshot files at all Load returns
// a zero LoadResult and nil: a fresh start. If files exist but none is
// valid it returns an error wrapping ErrNoValidSnapshot. An error from fn
// stops the load and is returned unchanged. Temp files are ignored.
func Load(fsys vfs.FS, dir string, fn func(e *wal.Entry) error) (LoadResult, error) {
	var res LoadResult
	infos, err := List(fsys, dir)
	if err != nil {
		return res, err
	}
	var r reader
	for _, info := range infos {
		count, err := r.open(fsys, info.Path)
		if err == nil {
			err = r.verify()
		}
		if err != nil {
			r.close()
			res.Skipped = append(res.Skipped, Skipped{Name: info.Name, Reason: err.Error()})
			continue
		}
		info.Count = count
		res.Info = info
		err = r.entries(fn)
		r.close()
		return res, err
	}
	if len(res.Skipped) > 0 {
		var reasons []string
		for _, s := range res.Skipped {
			reasons = append(reasons, s.Name+": "+s.Reason)
		}
		return res, fmt.Errorf("%w in %s: %s", ErrNoValidSnapshot, dir, strings.Join(reasons, "; "))
	}
	return res, nil
}

// Verify checks one snapshot file completely without delivering entries.
func Verify(fsys vfs.FS, path string) (Info, error) {
	var r reader
	defer r.close()
	count, err := r.open(fsys, path)
	if err == nil {
		err = r.verify()
	}
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: %s: %w", filepath.Base(path), err)
	}
	lsn, _ := parseName(path, false)
	return Info{Name: filepath.Base(path), Path: path, LSN: lsn, Count: count, Bytes: r.size}, nil
}

// reader reads one snapshot file: open checks header and trailer, verify
// streams every block checking checksums and counts, entries streams them
// again decoding entries.
type reader struct {
	path   string
	f      vfs.File
	size   int64
	hdr    header
	tr     trailer
	br     *bufio.Reader
	buf    []byte
	hdrBuf [blockHeader]byte
	dec    wal.UpdateDecoder
}

func (r *reader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

func (r *reader) open(fsys vfs.FS, path string) (uint64, error) {
	r.path = path
	f, err := fsys.Open(path)
	if err != nil {
		return 0, err
	}
	r.f = f
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	r.size = st.Size()
	if r.size < headerSize+trailerSize {
		return 0, fmt.Errorf("truncated: %d bytes", r.size)
	}
	var b [headerSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0, err
	}
	if r.hdr, err = decodeHeader(b[:]); err != nil {
		return 0, err
	}
	if _, err := f.ReadAt(b[:trailerSize], r.size-trailerSize); err != nil {
		return 0, err
	}
	if r.tr, err = decodeTrailer(b[:trailerSize]); err != nil {
		return 0, err
	}
	if lsn, ok := parseName(path, false); ok && lsn != r.hdr.lsn {
		return 0, fmt.Errorf("file name says LSN %d, header says %d", lsn, r.hdr.lsn)
	}
	if r.tr.lsn != r.hdr.lsn || r.tr.count != r.hdr.count {
		return 0, fmt.Errorf("header (LSN %d, %d entries) and trailer (LSN %d, %d entries) disagree",
			r.hdr.lsn, r.hdr.count, r.tr.lsn, r.tr.count)
	}
	return r.hdr.count, nil
}

// blocks calls fn with the payload of every block, checking each block's
// checksum, the running CRC and the block count against the trailer.
func (r *reader) blocks(fn func(payload []byte) error) error {
	sec := io.NewSectionReader(r.f, headerSize, r.size-headerSize-trailerSize)
	if r.br == nil {
		r.br = bufio.NewReaderSize(sec, int(min(1<<20, r.size)))
	} else {
		r.br.Reset(sec)
	}
	var crc uint32
	var n uint32
	off := int64(headerSize)
	hdr := r.hdrBuf[:] // a field, so that it does not escape per block
	for {
		if _, err := io.ReadFull(r.br, hdr); err != nil {
			if err == io.EOF {
				break
			}
			return fmt.Errorf("block %d at offset %d: truncated header", n, off)
		}
		size := binary.LittleEndian.Uint32(hdr[4:8])
		if size > maxBlock || int64(size) > r.size-trailerSize-off-blockHeader {
			return fmt.Errorf("block %d at offset %d: bad length %d", n, off, size)
		}
		if cap(r.buf) < int(size) {
			r.buf = make([]byte, size)
		}
		payload := r.buf[:size]
		if _, err := io.ReadFull(r.br, payload); err != nil {
			return fmt.Errorf("block %d at offset %d: %v", n, off, err)
		}
		if got, want := binary.LittleEndian.Uint32(hdr[0:4]), blockCRC(hdr[4:8], payload); got != want {
			return fmt.Errorf("block %d at offset %d: checksum mismatch (stored %#08x, computed %#08x)", n, off, got, want)
		}
		crc = crc32.Update(crc32.Update(crc, castagnoli, hdr), castagnoli, payload)
		if err := fn(payload); err != nil {
			return fmt.Errorf("block %d at offset %d: %w", n, off, err)
		}
		n++
		off += blockHeader + int64(size)
	}
	if n != r.tr.blocks || crc != r.tr.blocksCRC {
		return fmt.Errorf("trailer expects %d blocks with CRC %#08x, found %d with CRC %#08x", r.tr.blocks, r.tr.blocksCRC, n, crc)
	}
	return nil
}

// verify checks every block's checksum and decodes every entry, so that
// entries (run next) cannot fail halfway through the caller's load.
func (r *reader) verify() error {
	var total uint64
	err := r.blocks(func(p []byte) error {
		if err := r.dec.Reset(p); err != nil {
			return err
		}
		for r.dec.Next() {
			if k := r.dec.Entry().Kind; k != wal.KindUpdate {
				return fmt.Errorf("entry %d has kind %v", total, k)
			}
			total++
		}
		return r.dec.Err()
	})
	if err != nil {
		return err
	}
	if total != r.tr.count {
		return fmt.Errorf("blocks hold %d entries, trailer says %d", total, r.tr.count)
	}
	return nil
}

// errCallback marks an error returned by the caller's fn.
type errCallback struct{ err error }

func (e errCallback) Error() string { return e.err.Error() }

func (r *reader) entries(fn func(e *wal.Entry) error) error {
	err := r.blocks(func(p []byte) error {
		if err := r.dec.Reset(p); err != nil {
			return err
		}
		for r.dec.Next() {
			e := r.dec.Entry()
			if e.Kind != wal.KindUpdate {
				return fmt.Errorf("entry %q has kind %v", e.ID, e.Kind)
			}
			if err := fn(e); err != nil {
				return errCallback{err}
			}
		}
		return r.dec.Err()
	})
	var cb errCallback
	if errors.As(err, &cb) {
		return cb.err
	}
	if err != nil {
		// The checksums matched a moment ago, so this is not a torn file:
		// the file changed under us or the writer had a bug.
		return fmt.Errorf("snapshot: %s: %w", filepath.Base(r.path), err)
	}
	return nil
}

// PruneResult describes what Prune removed.
type PruneResult struct {
	Removed []string // snapshot and stale temp files deleted
	Kept    []Info   // snapshots kept, newest first
	// KeepWALFrom is the lowest LSN the WAL must still hold so that any
	// kept snapshot can be loaded and replayed: oldest kept LSN + 1. Pass
	// it to wal.Log.TruncateBefore. Zero if no snapshot is kept.
	KeepWALFrom wal.LSN
}

// Prune keeps the newest keep snapshots in dir (keep < 1 means 2) and
// deletes older ones, plus temp files of abandoned writers (those with an
// LSN at or below the newest snapshot: an in-progress Writer for a newer
// snapshot is left alone), then fsyncs the directory. Call it after a
// successful Commit, so that the newest snapshot is known to be valid.
func Prune(fsys vfs.FS, dir string, keep int) (PruneResult, error) {
	if keep < 1 {
		keep = 2
	}
	var res PruneResult
	infos, err := List(fsys, dir)
	if err != nil {
		return res, err
	}
	var doomed []string
	if len(infos) > keep {
		for _, info := range infos[keep:] {
			doomed = append(doomed, info.Name)
		}
		infos = infos[:keep]
	}
	res.Kept = infos
	if len(infos) > 0 {
		res.KeepWALFrom = infos[len(infos)-1].LSN + 1
		names, err := fsys.List(dir)
		if err != nil {
			return res, ioErr("list", dir, err)
		}
		for _, n := range names {
			if lsn, ok := parseName(n, true); ok && lsn <= infos[0].LSN {
				doomed = append(doomed, n)
			}
		}
	}
	for _, n := range doomed {
		if err := fsys.Remove(filepath.Join(dir, n)); err != nil {
			return res, ioErr("remove", n, err)
		}
		res.Removed = append(res.Removed, n)
	}
	if len(doomed) > 0 {
		if err := fsys.SyncDir(dir); err != nil {
			return res, ioErr("fsync dir", dir, err)
		}
	}
	return res, nil
}
