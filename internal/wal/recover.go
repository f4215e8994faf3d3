package wal

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/fleetd/fleetd/internal/vfs"
)

// segment is one file of the log.
type segment struct {
	first LSN    // LSN of its first record (from the file name)
	name  string // base name
}

// listSegments returns the segments in dir, oldest first. Other files
// are ignored.
func listSegments(fsys vfs.FS, dir string) ([]segment, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return nil, ioErr("list", dir, err)
	}
	var segs []segment
	for _, n := range names {
		if first, ok := parseSegmentName(n); ok {
			segs = append(segs, segment{first: first, name: n})
		}
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	return segs, nil
}

// readFile reads up to size bytes (all of it if size < 0) of the named
// file into *buf, growing it as needed, and returns them.
func readFile(fsys vfs.FS, path string, size int64, buf *[]byte) ([]byte, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, ioErr("open", filepath.Base(path), err)
	}
	defer f.Close()
	if size < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, ioErr("stat", filepath.Base(path), err)
		}
		size = st.Size()
	}
	if int64(cap(*buf)) < size {
		*buf = make([]byte, size)
	}
	data := (*buf)[:size]
	n, err := f.ReadAt(data, 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, ioErr("read", filepath.Base(path), err)
	}
	return data, nil
}

// scanResult is what scanLog found in a log directory.
type scanResult struct {
	segs   []segment // segments in the log, oldest first
	counts []int     // valid records per segment (up to bad, for badSeg)
	ends   []int64   // bytes of valid records per segment
	sizes  []int64   // file sizes
	stale  []string  // empty non-last segments: leftovers of a failed rotation

	bad     *CorruptError // first problem found, nil if none
	badSeg  int           // index in segs of the segment holding bad
	cutLSN  LSN           // LSN of the first record at or after bad
	tail    bool          // bad is a torn tail of the last segment
	tailWhy string
}

// scanLog reads and verifies every segment in dir. It stops at the first
// bad record or LSN discontinuity and classifies it.
func scanLog(fsys vfs.FS, dir string) (*scanResult, error) {
	all, err := listSegments(fsys, dir)
	if err != nil {
		return nil, err
	}
	res := &scanResult{badSeg: -1}
	var buf []byte
	for i, s := range all {
		path := filepath.Join(dir, s.name)
		data, err := readFile(fsys, path, -1, &buf)
		if err != nil {
			return nil, err
		}
		last := i == len(all)-1
		if len(data) == 0 && !last {
			// Rotation created this file but could not make it durable
			// and went on writing the previous segment.
			res.stale = append(res.stale, s.name)
			continue
		}
		if k := len(res.segs); k > 0 {
			if bad := continuity(fsys, dir, res.segs[k-1], res.counts[k-1], res.ends[k-1], s, &buf); bad != nil {
				res.bad, res.badSeg = bad, k-1
				res.cutLSN = min(s.first, res.segs[k-1].first+LSN(res.counts[k-1]))
				return res, nil
			}
		}
		n, end, bad, _ := scanSegment(path, data, nil)
		res.segs = append(res.segs, s)
		res.counts = append(res.counts, n)
		res.ends = append(res.ends, int64(end))
		res.sizes = append(res.sizes, int64(len(data)))
		if bad != nil {
			res.bad, res.badSeg = bad, len(res.segs)-1
			res.cutLSN = s.first + LSN(n)
			if last {
				res.tail, res.tailWhy = isTornTail(data, end)
			}
			return res, nil
		}
	}
	return res, nil
}

// continuity checks that segment next starts right after prev's last
// record, returning a *CorruptError located in prev if not.
func continuity(fsys vfs.FS, dir string, prev segment, count int, end int64, next segment, buf *[]byte) *CorruptError {
	want := prev.first + LSN(count)
	if want == next.first {
		return nil
	}
	path := filepath.Join(dir, prev.name)
	if want < next.first {
		return &CorruptError{File: path, Offset: end,
			Reason: fmt.Sprintf("records end at LSN %d but the next segment %s starts at LSN %d (records missing)", want-1, next.name, next.first)}
	}
	// prev holds records that overlap next: locate the first of them.
	keep := int(next.first - prev.first)
	off := end
	if data, err := readFile(fsys, path, end, buf); err == nil {
		i := 0
		scanSegment(path, data, func(o int, _ byte, _ []byte) error {
			if i == keep {
				off = int64(o)
				return io.EOF
			}
			i++
			return nil
		})
	}
	return &CorruptError{File: path, Offset: off,
		Reason: fmt.Sprintf("records run to LSN %d but the next segment %s starts at LSN %d (overlap)", want-1, next.name, next.first)}
}

// TailTruncation describes a torn tail that Open cut off the last segment.
type TailTruncation struct {
	File    string // path of the segment
	Offset  int64  // new size of the file: the end of its last valid record
	Dropped int64  // bytes removed
	Reason  string // what was wrong with the first dropped record
}

func (t TailTruncation) String() string {
	return fmt.Sprintf("wal: truncated torn tail of %s at offset %d (%d bytes dropped): %s", t.File, t.Offset, t.Dropped, t.Reason)
}

// RepairReport describes what Repair cut.
type RepairReport struct {
	Corruption      *CorruptError // the problem found; nil if the log was intact
	Truncated       string        // path of the file cut at Corruption.Offset
	BytesDropped    int64         // bytes removed, including removed segments
	RemovedSegments []string      // whole segments deleted after the cut
	NextLSN         LSN           // LSN the next appended record will get
}

// Repair deliberately truncates the log in dir at its first corruption:
// the bad segment is cut at the first bad record and every later segment
// is deleted. Records after the cut are lost; use it when Open returns a
// *CorruptError and losing the rest of the log is acceptable (for example
// after restoring older state). An intact log is left untouched. The log
// must not be open.
func Repair(fsys vfs.FS, dir string) (RepairReport, error) {
	var rep RepairReport
	res, err := scanLog(fsys, dir)
	if err != nil {
		return rep, err
	}
	if err := removeStale(fsys, dir, res.stale); err != nil {
		return rep, err
	}
	if res.bad == nil {
		if k := len(res.segs); k > 0 {
			rep.NextLSN = res.segs[k-1].first + LSN(res.counts[k-1])
		}
		return rep, nil
	}
	rep.Corruption = res.bad
	rep.Truncated = res.bad.File
	if err := truncateFile(fsys, res.bad.File, res.bad.Offset); err != nil {
		return rep, err
	}
	seg := res.badSeg
	rep.BytesDropped = res.sizes[seg] - res.bad.Offset
	rep.NextLSN = res.cutLSN
	later, err := listSegments(fsys, dir)
	if err != nil {
		return rep, err
	}
	for _, s := range later {
		if s.first <= res.segs[seg].first {
			continue
		}
		path := filepath.Join(dir, s.name)
		if st, err := fsys.Stat(path); err == nil {
			rep.BytesDropped += st.Size()
		}
		if err := fsys.Remove(path); err != nil {
			return rep, ioErr("repair: remove", s.name, err)
		}
		rep.RemovedSegments = append(rep.RemovedSegments, s.name)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return rep, ioErr("repair: fsync dir", dir, err)
	}
	return rep, nil
}

func removeStale(fsys vfs.FS, dir string, stale []string) error {
	for _, name := range stale {
		if err := fsys.Remove(filepath.Join(dir, name)); err != nil {
			return ioErr("remove stale segment", name, err)
		}
	}
	if len(stale) > 0 {
		if err := fsys.SyncDir(dir); err != nil {
			return ioErr("fsync dir", dir, err)
		}
	}
	return nil
}

// truncateFile cuts path to size and fsyncs it.
func truncateFile(fsys vfs.FS, path string, size int64) error {
	f, err := fsys.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return ioErr("open", filepath.Base(path), err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return ioErr("truncate", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return ioErr("fsync", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return ioErr("close", filepath.Base(path), err)
	}
	return nil
}

// ioErr wraps an I/O error as "wal: <op> <name>: <errno text>", dropping
// the *fs.PathError layer (whose path would repeat the name) but
// keeping the cause for errors.Is (for example syscall.ENOSPC).
func ioErr(op, name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("wal: %s %s: %w", op, name, err)
}
