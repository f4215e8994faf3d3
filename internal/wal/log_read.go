package wal

import (
	"fmt"
	"path/filepath"
	"slices"
)

// Replay calls fn for every record with LSN >= fromLSN, in LSN order, up
// to the last record written when Replay started. payload is valid only
// during the call. Records are verified again as they are read; damage
// returns a *CorruptError. An error from fn stops the replay and is
// returned unchanged. fromLSN 0 means the first record in the log; a
// fromLSN below FirstLSN returns an error, since records the caller needs
// were truncated away.
//
// Replay reads a whole segment into memory at a time (up to SegmentSize
// plus one group). It may run concurrently with Append; it must not run
// concurrently with TruncateBefore of segments it still has to read.
func (l *Log) Replay(fromLSN LSN, fn func(lsn LSN, typ byte, payload []byte) error) error {
	l.mu.Lock()
	segs := slices.Clone(l.mu.segs)
	next, written := l.mu.next, l.mu.written
	l.mu.Unlock()

	if fromLSN == 0 {
		fromLSN = segs[0].first
	}
	if fromLSN < segs[0].first {
		return fmt.Errorf("wal: replay from LSN %d: log starts at LSN %d (older records were truncated)", fromLSN, segs[0].first)
	}
	var buf []byte
	for i, s := range segs {
		end, size := next, written
		if i+1 < len(segs) {
			end, size = segs[i+1].first, -1
		}
		if end <= fromLSN {
			continue
		}
		path := filepath.Join(l.dir, s.name)
		data, err := readFile(l.fs, path, size, &buf)
		if err != nil {
			return err
		}
		lsn := s.first
		n, _, bad, err := scanSegment(path, data, func(off int, typ byte, payload []byte) error {
			if lsn >= end {
				return &CorruptError{File: path, Offset: int64(off),
					Reason: fmt.Sprintf("record LSN %d beyond the segment's range, which ends before LSN %d", lsn, end)}
			}
			cur := lsn
			lsn++
			if cur < fromLSN {
				return nil
			}
			return fn(cur, typ, payload)
		})
		if err != nil {
			return err
		}
		if bad != nil {
			return bad
		}
		if s.first+LSN(n) != end {
			return &CorruptError{File: path, Offset: int64(len(data)),
				Reason: fmt.Sprintf("segment holds %d records, expected %d", n, end-s.first)}
		}
	}
	return nil
}

// TruncateBefore deletes every segment whose records all have LSNs below
// lsn (call it with snapshotLSN+1 after a snapshot covering snapshotLSN is
// durable). The active segment is never deleted, so records below lsn may
// remain; Replay skips them. Safe for concurrent use with Append.
func (l *Log) TruncateBefore(lsn LSN) error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	k := 0
	for k+1 < len(l.mu.segs) && l.mu.segs[k+1].first <= lsn {
		k++
	}
	doomed := slices.Clone(l.mu.segs[:k])
	l.mu.segs = slices.Delete(l.mu.segs, 0, k)
	l.mu.Unlock()

	// Delete oldest first: a crash midway leaves a contiguous log.
	for _, s := range doomed {
		if err := l.fs.Remove(filepath.Join(l.dir, s.name)); err != nil {
			return ioErr("remove", s.name, err)
		}
	}
	if len(doomed) > 0 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return ioErr("fsync dir", l.dir, err)
		}
	}
	return nil
}
