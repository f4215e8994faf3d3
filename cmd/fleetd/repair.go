package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fleetd/fleetd/internal/vfs"
	"github.com/fleetd/fleetd/internal/wal"
)

func init() {
	register("repair", "cut a corrupt write-ahead log at its first bad record so the server can start", runRepair)
}

const repairHelp = `Usage: fleetd repair --data DIR

fleetd serve refuses to start when the write-ahead log is corrupt anywhere
but at its very end (a torn last record is cut automatically: only
unacknowledged data can be there). The error names the file and offset.
If you accept losing every record after that point, stop the server and run
this command: it truncates the log at the first bad record, deletes later
segments and prints what it removed. An intact log is left untouched.
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
