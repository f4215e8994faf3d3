package vfs

import (
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemFS is an in-memory FS with a strict durability model, for tests:
//
//   - a file's contents are durable only up to its last Sync;
//   - a directory entry (create, rename, remove) is durable only after
//     SyncDir of its directory; directories made by MkdirAll are durable
//     at once (a simplification: fleetd syncs the parent anyway).
//
// CrashClone returns the state a power cut would leave behind. All
// methods are safe for concurrent use (one mutex guards the tree).
type MemFS struct {
	mu   sync.Mutex // guards every node reachable from root
	root *memNode
}

// memNode is a file or a directory. Fields are guarded by MemFS.mu.
type memNode struct {
	dir bool

	// Directory: live entries and the entries as of the last SyncDir.
	children map[string]*memNode
	durable  map[string]*memNode

	// File: live contents, contents as of the last Sync, and the lowest
	// offset modified since that Sync (dirtyFrom >= len(data) and
	// len(synced) == len(data) means clean).
	data      []byte
	synced    []byte
	dirtyFrom int
	modTime   time.Time
}

// NewMem returns an empty MemFS.
func NewMem() *MemFS {
	return &MemFS{root: newDirNode()}
}

func newDirNode() *memNode {
	return &memNode{dir: true, children: map[string]*memNode{}, durable: map[string]*memNode{}, modTime: time.Now()}
}

func (m *MemFS) String() string { return "vfs.MemFS" }

// split cleans name into path components below the root.
func split(name string) []string {
	c := filepath.ToSlash(filepath.Clean(name))
	c = strings.TrimLeft(c, "/")
	if c == "" || c == "." {
		return nil
	}
	return strings.Split(c, "/")
}

// walkLocked returns the directory that holds the last component of name
// and that component ("" for the root itself).
func (m *MemFS) walkLocked(op, name string) (*memNode, string, error) {
	parts := split(name)
	if len(parts) == 0 {
		return nil, "", nil
	}
	d := m.root
	for _, p := range parts[:len(parts)-1] {
		c, ok := d.children[p]
		if !ok {
			return nil, "", &os.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if !c.dir {
			return nil, "", &os.PathError{Op: op, Path: name, Err: syscall.ENOTDIR}
		}
		d = c
	}
	return d, parts[len(parts)-1], nil
}

func (m *MemFS) lookupLocked(op, name string) (*memNode, error) {
	d, base, err := m.walkLocked(op, name)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return m.root, nil
	}
	n, ok := d.children[base]
	if !ok {
		return nil, &os.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return n, nil
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	return m.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile implements FS.
func (m *MemFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.walkLocked("open", name)
	if err != nil {
		return nil, err
	}
	var n *memNode
	if d == nil {
		n = m.root
	} else {
		n = d.children[base]
	}
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case n != nil && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case n == nil:
		n = &memNode{modTime: time.Now()}
		d.children[base] = n
	}
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if n.dir && writable {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	if flag&os.O_TRUNC != 0 && writable {
		n.truncate(0)
	}
	return &memFile{fs: m, n: n, name: name, read: flag&os.O_WRONLY == 0, write: writable, append: flag&os.O_APPEND != 0}, nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.walkLocked("remove", name)
	if err != nil {
		return err
	}
	if d == nil {
		return &os.PathError{Op: "remove", Path: name, Err: syscall.EBUSY}
	}
	n, ok := d.children[base]
	if !ok {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if n.dir && len(n.children) > 0 {
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
	}
	delete(d.children, base)
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	od, ob, err := m.walkLocked("rename", oldname)
	if err != nil {
		return err
	}
	nd, nb, err := m.walkLocked("rename", newname)
	if err != nil {
		return err
	}
	if od == nil || nd == nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EBUSY}
	}
	n, ok := od.children[ob]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	if t, ok := nd.children[nb]; ok && t.dir {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EISDIR}
	}
	delete(od.children, ob)
	nd.children[nb] = n
	return nil
}

// MkdirAll implements FS. New directories are durable at once.
func (m *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.root
	for _, p := range split(dir) {
		c, ok := d.children[p]
		if !ok {
			c = newDirNode()
			d.children[p] = c
			d.durable[p] = c
		} else if !c.dir {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		d = c
	}
	return nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked("stat", name)
	if err != nil {
		return nil, err
	}
	return n.info(filepath.Base(name)), nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked("readdir", dir)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: syscall.ENOTDIR}
	}
	names := make([]string, 0, len(n.children))
	for k := range n.children {
		names = append(names, k)
	}
	slices.Sort(names)
	return names, nil
}

// SyncDir implements FS: the directory's entries become durable.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked("sync", dir)
	if err != nil {
		return err
	}
	if !n.dir {
		return &os.PathError{Op: "sync", Path: dir, Err: syscall.ENOTDIR}
	}
	clear(n.durable)
	for k, v := range n.children {
		n.durable[k] = v
	}
	return nil
}

// DropUnsynced reverts the named file's live contents to what was last
// synced, as a kernel that drops dirty pages after a failed writeback
// does (the "fsyncgate" behaviour). Missing files are ignored.
func (m *MemFS) DropUnsynced(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked("drop", name)
	if err != nil || n.dir {
		return
	}
	n.data = append(n.data[:0:0], n.synced...)
	n.dirtyFrom = len(n.data)
}

// CrashOptions tunes CrashClone.
type CrashOptions struct {
	// Rand, when non-nil, keeps a random prefix of the bytes appended to
	// each file since its last Sync (a torn write), instead of dropping
	// them all. Files whose unsynced changes are not pure appends are
	// always reset to their synced contents.
	Rand *rand.Rand
}

// CrashClone returns a new MemFS holding what a power cut at this instant
// would leave on disk: only durable directory entries, and each file
// with only its synced contents. The receiver is not modified, so
// goroutines still using it can finish and be shut down normally.
func (m *MemFS) CrashClone(opts CrashOptions) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &MemFS{root: crashCopy(m.root, opts.Rand)}
}

func crashCopy(d *memNode, rng *rand.Rand) *memNode {
	nd := newDirNode()
	for name, c := range d.durable {
		var cc *memNode
		if c.dir {
			cc = crashCopy(c, rng)
		} else {
			data := slices.Clone(c.synced)
			if rng != nil && c.dirtyFrom >= len(c.synced) && len(c.data) > len(c.synced) {
				extra := rng.IntN(len(c.data) - len(c.synced) + 1)
				data = append(data, c.data[len(c.synced):len(c.synced)+extra]...)
			}
			cc = &memNode{data: data, synced: slices.Clone(data), dirtyFrom: len(data), modTime: c.modTime}
		}
		nd.children[name] = cc
		nd.durable[name] = cc
	}
	return nd
}

func (n *memNode) info(name string) os.FileInfo {
	mode := os.FileMode(0o644)
	if n.dir {
		mode = fs.ModeDir | 0o755
	}
	return memInfo{name: name, size: int64(len(n.data)), mode: mode, mod: n.modTime}
}

// markDirty records that bytes from off on changed since the last Sync.
func (n *memNode) markDirty(off int) {
	n.dirtyFrom = min(n.dirtyFrom, off)
	n.modTime = time.Now()
}

func (n *memNode) truncate(size int) {
	if size < len(n.data) {
		n.markDirty(size)
		n.data = n.data[:size]
		return
	}
	if size > len(n.data) {
		n.markDirty(len(n.data))
		n.data = append(n.data, make([]byte, size-len(n.data))...)
	}
}

func (n *memNode) writeAt(p []byte, off int) {
	if end := off + len(p); end > len(n.data) {
		n.truncate(end)
	}
	n.markDirty(off)
	copy(n.data[off:], p)
}

// sync copies only the bytes changed since the previous sync, so a
// growing log costs O(appended bytes) per Sync.
func (n *memNode) sync() {
	from := min(n.dirtyFrom, len(n.synced), len(n.data))
	n.synced = append(n.synced[:from], n.data[from:]...)
	n.dirtyFrom = len(n.data)
}

type memInfo struct {
	name string
	size int64
	mode os.FileMode
	mod  time.Time
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() os.FileMode  { return i.mode }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.mode.IsDir() }
func (i memInfo) Sys() any           { return nil }

// memFile is an open handle. pos and closed are guarded by fs.mu.
type memFile struct {
	fs                  *MemFS
	n                   *memNode
	name                string
	pos                 int64
	read, write, append bool
	closed              bool
}

// check returns the error for op on this handle, if any: closed, or a
// read/write the open mode does not allow.
func (f *memFile) check(op string, needWrite bool) error {
	switch {
	case f.closed:
		return &os.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	case needWrite && !f.write, op == "read" && !f.read:
		return &os.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if f.n.dir {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: syscall.EISDIR}
	}
	if f.pos >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, f.n.data[f.pos:])
	f.pos += int64(k)
	return k, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: f.name, Err: syscall.EINVAL}
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, f.n.data[off:])
	if k < len(p) {
		return k, io.EOF
	}
	return k, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	if f.append {
		f.pos = int64(len(f.n.data))
	}
	f.n.writeAt(p, int(f.pos))
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	if off < 0 || f.append {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: syscall.EINVAL}
	}
	f.n.writeAt(p, int(off))
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	if !f.n.dir {
		f.n.sync()
	}
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	f.n.truncate(int(size))
	return nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat", false); err != nil {
		return nil, err
	}
	return f.n.info(filepath.Base(f.name)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &os.PathError{Op: "close", Path: f.name, Err: os.ErrClosed}
	}
	f.closed = true
	return nil
}
