package history

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fleetd/fleetd/internal/vfs"
)

// QuarantineDir is where Repair moves the run files it finds damaged,
// inside history's directory: out of every answer, kept for inspection.
const QuarantineDir = "quarantine"

// RepairReport says what Repair found.
type RepairReport struct {
	Runs        int      // run files checked
	Points      uint64   // points in the intact runs
	Quarantined []string // damaged runs moved to QuarantineDir, with why
	Removed     []string // leftovers of interrupted writes deleted
}

// Repair checks every run file under dir completely (header, index,
// every block's checksum and columns) and moves each damaged one to
// dir/quarantine, so that a server started afterwards serves the rest
// with complete answers. The points of a quarantined run are lost unless
// the write-ahead log still holds them (the server replays what history
// has not covered). Run it on a stopped server.
func Repair(fs vfs.FS, dir string) (RepairReport, error) {
	var rep RepairReport
	names, err := fs.List(dir)
	if err != nil {
		return rep, fmt.Errorf("history: %w", err)
	}
	for _, name := range names {
		if _, ok := parseHourDir(name); !ok {
			continue
		}
		pdir := filepath.Join(dir, name)
		runs, err := fs.List(pdir)
		if err != nil {
			return rep, fmt.Errorf("history: %w", err)
		}
		for _, rn := range runs {
			path := filepath.Join(pdir, rn)
			if strings.HasSuffix(rn, ".tmp") {
				if err := fs.Remove(path); err != nil {
					return rep, fmt.Errorf("history: %w", err)
				}
				rep.Removed = append(rep.Removed, path)
				continue
			}
			if _, _, ok := parseRunName(rn); !ok {
				continue
			}
			rep.Runs++
			points, verr := verifyRun(fs, path)
			if verr == nil {
				rep.Points += points
				continue
			}
			qdir := filepath.Join(dir, QuarantineDir)
			if err := fs.MkdirAll(qdir, 0o755); err != nil {
				return rep, fmt.Errorf("history: %w", err)
			}
			if err := fs.Rename(path, filepath.Join(qdir, name+"-"+rn)); err != nil {
				return rep, fmt.Errorf("history: quarantining %s: %w", path, err)
			}
			if err := fs.SyncDir(qdir); err != nil {
				return rep, fmt.Errorf("history: %w", err)
			}
			if err := fs.SyncDir(pdir); err != nil {
				return rep, fmt.Errorf("history: %w", err)
			}
			rep.Quarantined = append(rep.Quarantined, fmt.Sprintf("%s: %v", path, verr))
		}
	}
	return rep, nil
}

// verifyRun reads a run whole and returns its points.
func verifyRun(fs vfs.FS, path string) (uint64, error) {
	r, err := openRun(fs, path)
	if err != nil {
		return 0, err
	}
	defer r.release()
	var buf []byte
	var g group
	var points uint64
	var blockErr error
	err = r.scan(func(_ int, e *entry) bool {
		buf, blockErr = r.block(e, buf, &g)
		points += uint64(len(g.pts))
		return blockErr == nil
	})
	if err == nil {
		err = blockErr
	}
	if err == nil && points != r.points {
		err = corrupt("%s: %d points in its blocks, %d in its trailer", path, points, r.points)
	}
	return points, err
}
