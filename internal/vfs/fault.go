package vfs

import (
	"errors"
	"os"
	"strings"
	"sync"
)

// Op is a set of filesystem operations, used to select which calls a
// FaultFS rule applies to.
type Op uint32

// Operations a FaultFS can fail.
const (
	OpCreate   Op = 1 << iota // FS.Create, FS.OpenFile with O_CREATE
	OpOpen                    // FS.Open, FS.OpenFile without O_CREATE
	OpRead                    // File.Read, File.ReadAt
	OpWrite                   // File.Write, File.WriteAt
	OpSync                    // File.Sync
	OpTruncate                // File.Truncate
	OpClose                   // File.Close (the file is closed anyway)
	OpRemove                  // FS.Remove
	OpRename                  // FS.Rename
	OpMkdir                   // FS.MkdirAll
	OpSyncDir                 // FS.SyncDir
	OpList                    // FS.List
	OpStat                    // FS.Stat, File.Stat

	OpAll Op = 1<<iota - 1
)

var opNames = [...]string{"create", "open", "read", "write", "sync", "truncate", "close", "remove", "rename", "mkdir", "syncdir", "list", "stat"}

func (o Op) String() string {
	var parts []string
	for i, n := range opNames {
		if o&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// ErrInjected is a generic error for rules that do not need a specific errno.
var ErrInjected = errors.New("vfs: injected fault")

// Rule selects operations that a FaultFS fails.
type Rule struct {
	Ops          Op     // operations the rule matches
	PathContains string // if non-empty, only paths containing it match
	After        int    // let this many matching operations succeed first
	Times        int    // fail this many times, then retire; 0: until Reset
	Err          error  // returned wrapped in *os.PathError, like the os package
	// Hook, if set, runs each time the rule fires, before the error is
	// returned; for example MemFS.DropUnsynced to model a kernel that
	// discards dirty pages after a failed fsync.
	Hook func(op Op, path string)
}

// FaultFS wraps an FS and fails chosen operations, like pebble's errorfs.
// Typical uses:
//
//	ffs.FailNth(vfs.OpSync, 3, syscall.ENOSPC)      // the 3rd fsync from now fails once
//	ffs.FailAll(vfs.OpWrite|vfs.OpSync, syscall.ENOSPC) // disk full ...
//	ffs.Reset()                                      // ... until space is freed
//
// With SetShortWrites(true) a failing write first writes half its bytes,
// as a real write that hits ENOSPC midway does. Combine with MemFS and
// CrashClone to simulate power cuts. Safe for concurrent use.
type FaultFS struct {
	base FS

	mu struct {
		sync.Mutex
		rules  []*Rule // active rules, in the order injected
		short  bool    // failed writes write half their bytes first
		counts [len(opNames)]int64
		failed int64
	}
}

// NewFaultFS wraps base. With no rules it passes every call through.
func NewFaultFS(base FS) *FaultFS { return &FaultFS{base: base} }

// Inject adds a rule.
func (f *FaultFS) Inject(r Rule) {
	if r.Err == nil {
		r.Err = ErrInjected
	}
	f.mu.Lock()
	f.mu.rules = append(f.mu.rules, &r)
	f.mu.Unlock()
}

// FailNth makes the n-th (1-based, counted from now) operation in ops fail once with err.
func (f *FaultFS) FailNth(ops Op, n int, err error) {
	f.Inject(Rule{Ops: ops, After: n - 1, Times: 1, Err: err})
}

// FailAll makes every operation in ops fail with err until Reset.
func (f *FaultFS) FailAll(ops Op, err error) { f.Inject(Rule{Ops: ops, Err: err}) }

// Reset removes all rules: the "disk" recovers.
func (f *FaultFS) Reset() {
	f.mu.Lock()
	f.mu.rules = nil
	f.mu.Unlock()
}

// SetShortWrites controls whether a failing write first writes half of its bytes.
func (f *FaultFS) SetShortWrites(on bool) {
	f.mu.Lock()
	f.mu.short = on
	f.mu.Unlock()
}

// Count returns how many operations in ops were attempted (failed or not).
func (f *FaultFS) Count(ops Op) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for i := range opNames {
		if ops&(1<<i) != 0 {
			n += f.mu.counts[i]
		}
	}
	return n
}

// Failures returns how many operations were failed by rules.
func (f *FaultFS) Failures() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.failed
}

// maybeFail counts op and returns the injected error, if a rule fires.
// short reports whether a failing write should first write half its bytes.
func (f *FaultFS) maybeFail(op Op, path string) (short bool, err error) {
	short, hook, err := f.match(op, path)
	if hook != nil {
		hook(op, path)
	}
	return short, err
}

func (f *FaultFS) match(op Op, path string) (short bool, hook func(Op, string), err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range opNames {
		if op == 1<<i {
			f.mu.counts[i]++
		}
	}
	for i, r := range f.mu.rules {
		if r.Ops&op == 0 || (r.PathContains != "" && !strings.Contains(path, r.PathContains)) {
			continue
		}
		if r.After > 0 {
			r.After--
			continue
		}
		if r.Times > 0 {
			r.Times--
			if r.Times == 0 {
				f.mu.rules = append(f.mu.rules[:i:i], f.mu.rules[i+1:]...)
			}
		}
		f.mu.failed++
		name := opNames[0]
		for j := range opNames {
			if op == 1<<j {
				name = opNames[j]
			}
		}
		return f.mu.short, r.Hook, &os.PathError{Op: name, Path: path, Err: r.Err}
	}
	return false, nil, nil
}

func (f *FaultFS) String() string { return "vfs.FaultFS" }

// Create implements FS.
func (f *FaultFS) Create(name string) (File, error) {
	if _, err := f.maybeFail(OpCreate, name); err != nil {
		return nil, err
	}
	file, err := f.base.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, f: file, name: name}, nil
}

// Open implements FS.
func (f *FaultFS) Open(name string) (File, error) {
	return f.OpenFile(name, os.O_RDONLY, 0)
}

// OpenFile implements FS.
func (f *FaultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	op := OpOpen
	if flag&os.O_CREATE != 0 {
		op = OpCreate
	}
	if _, err := f.maybeFail(op, name); err != nil {
		return nil, err
	}
	file, err := f.base.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, f: file, name: name}, nil
}

// Remove implements FS.
func (f *FaultFS) Remove(name string) error {
	if _, err := f.maybeFail(OpRemove, name); err != nil {
		return err
	}
	return f.base.Remove(name)
}

// Rename implements FS.
func (f *FaultFS) Rename(oldname, newname string) error {
	if _, err := f.maybeFail(OpRename, newname); err != nil {
		return err
	}
	return f.base.Rename(oldname, newname)
}

// MkdirAll implements FS.
func (f *FaultFS) MkdirAll(dir string, perm os.FileMode) error {
	if _, err := f.maybeFail(OpMkdir, dir); err != nil {
		return err
	}
	return f.base.MkdirAll(dir, perm)
}

// Stat implements FS.
func (f *FaultFS) Stat(name string) (os.FileInfo, error) {
	if _, err := f.maybeFail(OpStat, name); err != nil {
		return nil, err
	}
	return f.base.Stat(name)
}

// List implements FS.
func (f *FaultFS) List(dir string) ([]string, error) {
	if _, err := f.maybeFail(OpList, dir); err != nil {
		return nil, err
	}
	return f.base.List(dir)
}

// SyncDir implements FS.
func (f *FaultFS) SyncDir(dir string) error {
	if _, err := f.maybeFail(OpSyncDir, dir); err != nil {
		return err
	}
	return f.base.SyncDir(dir)
}

type faultFile struct {
	fs   *FaultFS
	f    File
	name string
}

func (ff *faultFile) Read(p []byte) (int, error) {
	if _, err := ff.fs.maybeFail(OpRead, ff.name); err != nil {
		return 0, err
	}
	return ff.f.Read(p)
}

func (ff *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if _, err := ff.fs.maybeFail(OpRead, ff.name); err != nil {
		return 0, err
	}
	return ff.f.ReadAt(p, off)
}

func (ff *faultFile) Write(p []byte) (int, error) {
	if short, err := ff.fs.maybeFail(OpWrite, ff.name); err != nil {
		if short && len(p) > 1 {
			n, werr := ff.f.Write(p[:len(p)/2])
			if werr != nil {
				return n, werr
			}
			return n, err
		}
		return 0, err
	}
	return ff.f.Write(p)
}

func (ff *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if short, err := ff.fs.maybeFail(OpWrite, ff.name); err != nil {
		if short && len(p) > 1 {
			n, werr := ff.f.WriteAt(p[:len(p)/2], off)
			if werr != nil {
				return n, werr
			}
			return n, err
		}
		return 0, err
	}
	return ff.f.WriteAt(p, off)
}

func (ff *faultFile) Sync() error {
	if _, err := ff.fs.maybeFail(OpSync, ff.name); err != nil {
		return err
	}
	return ff.f.Sync()
}

func (ff *faultFile) Truncate(size int64) error {
	if _, err := ff.fs.maybeFail(OpTruncate, ff.name); err != nil {
		return err
	}
	return ff.f.Truncate(size)
}

func (ff *faultFile) Stat() (os.FileInfo, error) {
	if _, err := ff.fs.maybeFail(OpStat, ff.name); err != nil {
		return nil, err
	}
	return ff.f.Stat()
}

func (ff *faultFile) Close() error {
	cerr := ff.f.Close()
	if _, err := ff.fs.maybeFail(OpClose, ff.name); err != nil {
		return err
	}
	return cerr
}
