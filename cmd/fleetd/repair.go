package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fleetd/fleetd/internal/history"
	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

func init() {
	register("repair", "cut a corrupt write-ahead log at its first bad record, quarantine damaged history files", runRepair)
}

const repairHelp = `Usage: fleetd repair --data DIR

fleetd serve refuses to start when the write-ahead log is corrupt anywhere
but at its very end (a torn last record is cut automatically: only
unacknowledged data can be there). The error names the file and offset.
If you accept losing every record after that point, stop the server and run
this command: it truncates the log at the first bad record, deletes later
segments and prints what it removed. An intact log is left untouched.

It then checks every history file (DIR/history) whole — header, index,
each block's checksum — and moves the damaged ones to
DIR/history/quarantine, so that history answers are complete again
(without those files' points: the server logs and counts a damaged file,
and marks answers that need it "incomplete", until it is repaired).
Make a copy of DIR first if the data matters.

Flags:
  --data DIR   the data directory of fleetd serve (default ./fleetd-data)
`

func runRepair(args []string) int {
	fs := flag.NewFlagSet("fleetd repair", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, repairHelp) }
	data := fs.String("data", "./fleetd-data", "data directory")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	dir := filepath.Join(*data, "wal")
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(os.Stderr, "fleetd repair: no write-ahead log at %s: %v\n", dir, err)
		return 1
	}
	if code := repairLog(dir); code != 0 {
		return code
	}
	return repairHistory(filepath.Join(*data, "history"))
}

// repairHistory quarantines damaged history runs.
func repairHistory(dir string) int {
	if _, err := os.Stat(dir); err != nil {
		return 0 // no history kept
	}
	rep, err := history.Repair(vfs.Default, dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fleetd repair: %v\n", err)
		return 1
	}
	if len(rep.Quarantined) == 0 {
		fmt.Printf("history in %s is intact: %d files, %d points; nothing changed\n", dir, rep.Runs, rep.Points)
	} else {
		fmt.Printf("history in %s: %d of %d files damaged, moved to %s (%d points in the others):\n",
			dir, len(rep.Quarantined), rep.Runs, filepath.Join(dir, history.QuarantineDir), rep.Points)
		for _, q := range rep.Quarantined {
			fmt.Printf("  %s\n", q)
		}
	}
	for _, r := range rep.Removed {
		fmt.Printf("  removed the leftover of an interrupted write %s\n", r)
	}
	return 0
}

// repairLog cuts the write-ahead log at its first bad record.
func repairLog(dir string) int {
	rep, err := wal.Repair(vfs.Default, dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fleetd repair: %v\n", err)
		return 1
	}
	if rep.Corruption == nil {
		fmt.Printf("the write-ahead log in %s is intact; nothing changed (next record: %d)\n", dir, rep.NextLSN)
		return 0
	}
	fmt.Printf("found: %v\ncut %s at offset %d; removed %d later segment(s); %d bytes dropped; next record: %d\n",
		rep.Corruption, rep.Truncated, rep.Corruption.Offset, len(rep.RemovedSegments), rep.BytesDropped, rep.NextLSN)
	for _, s := range rep.RemovedSegments {
		fmt.Printf("  removed %s\n", s)
	}
	return 0
}
