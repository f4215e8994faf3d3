package vfs

import (
	"io"
	"os"
	"path/filepath"
	"slices"
)

// File is an open file. Implementations must allow ReadAt, WriteAt and
// Stat to run concurrently with each other; Read and Write use a shared
// file offset and must not be mixed with concurrent calls.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes the file's contents durable (fsync). It does NOT make
	// the file's directory entry durable: see FS.SyncDir.
	Sync() error
	// Truncate changes the file size; it does not move the offset used
	// by Read and Write.
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// FS is the filesystem through which fleetd performs all disk I/O.
// Paths use the host separator; implementations clean them.
type FS interface {
	// Create creates or truncates the named file for reading and writing.
	Create(name string) (File, error)
	// Open opens the named file read-only.
	Open(name string) (File, error)
	// OpenFile is the generalised open call (os.O_* flags). O_APPEND is
	// not supported by every implementation and fleetd never uses it.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove removes the named file or empty directory.
	Remove(name string) error
	// Rename atomically replaces newname with oldname. The change is
	// durable only after SyncDir on the directory (both directories if
	// they differ).
	Rename(oldname, newname string) error
	// MkdirAll creates dir and any missing parents.
	MkdirAll(dir string, perm os.FileMode) error
	// Stat describes the named file.
	Stat(name string) (os.FileInfo, error)
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// SyncDir fsyncs the directory so that creates, renames and removes
	// of its entries survive a power cut.
	SyncDir(dir string) error
}

// Default is the FS backed by the os package.
var Default FS = osFS{}

type osFS struct{}

func (osFS) Create(name string) (File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (osFS) Open(name string) (File, error) { return os.Open(name) }

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return os.OpenFile(name, flag, perm)
}

func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Stat(name string) (os.FileInfo, error)       { return os.Stat(name) }
func (osFS) List(dir string) ([]string, error)           { return listOS(dir) }
func (osFS) SyncDir(dir string) error                    { return syncDirOS(dir) }
func (osFS) String() string                              { return "vfs.Default" }

func listOS(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	cerr := f.Close()
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, cerr
	}
	slices.Sort(names)
	return names, nil
}

func syncDirOS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := f.Sync()
	cerr := f.Close()
	if serr != nil {
		return serr
	}
	return cerr
}

// SyncParent fsyncs the directory that contains path (".": the working
// directory). Use it after MkdirAll so that a freshly created directory
// itself survives a power cut.
func SyncParent(fs FS, path string) error {
	return fs.SyncDir(filepath.Dir(filepath.Clean(path)))
}
