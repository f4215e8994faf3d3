package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

// snapshotObject is the object-store name of the newest snapshot.
const snapshotObject = "latest"

// snapshotMagic opens a snapshot object (see doc.go).
var snapshotMagic = []byte("FLCS")

const snapshotVersion = 1

// openSnapshots opens (or creates) the object store <stream>-snapshots.
func (n *Node) openSnapshots() error {
	name := n.opts.Stream + "-snapshots"
	giveUp := time.Now().Add(30 * time.Second)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n.obj, err = n.js.ObjectStore(ctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			n.obj, err = n.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: name,
				Description: "fleetd snapshots with the stream positions they cover (package cluster)",
				Replicas:    n.stream.CachedInfo().Config.Replicas, Storage: jetstream.FileStorage})
			if errors.Is(err, jetstream.ErrBucketExists) {
				cancel()
				continue
			}
		}
		cancel()
		if err != nil && time.Now().Before(giveUp) {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		return fmt.Errorf("cluster: opening the snapshot store %q: %w", name, err)
	}
	return nil
}

// appendSnapshotHeader appends the header of a snapshot object covering seqs.
func appendSnapshotHeader(dst []byte, created int64, seqs []uint64) []byte {
	dst = append(dst, snapshotMagic...)
	dst = append(dst, snapshotVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(created))
	dst = binary.AppendUvarint(dst, uint64(len(seqs)))
	for _, s := range seqs {
		dst = binary.LittleEndian.AppendUint64(dst, s)
	}
	return dst
}

// decodeSnapshot checks a snapshot object's header and calls fn for each
// of its messages (a stream message of partition p; see doc.go).
func decodeSnapshot(b []byte, fn func(p int, msg []byte) error) (created int64, seqs []uint64, err error) {
	bad := func(why string) (int64, []uint64, error) {
		return 0, nil, fmt.Errorf("cluster: snapshot object: %s", why)
	}
	if len(b) < 14 || !bytes.Equal(b[:4], snapshotMagic) {
		return bad("no FLCS header")
	}
	if b[4] != snapshotVersion {
		return bad("unknown version " + strconv.Itoa(int(b[4])))
	}
	created = int64(binary.LittleEndian.Uint64(b[5:]))
	cnt, k := binary.Uvarint(b[13:])
	if k <= 0 || cnt == 0 || cnt > maxPartitions || uint64(len(b)-13-k) < cnt*8 {
		return bad("bad partition count")
	}
	rest := b[13+k:]
	seqs = make([]uint64, cnt)
	for i := range seqs {
		seqs[i] = binary.LittleEndian.Uint64(rest[i*8:])
	}
	rest = rest[cnt*8:]
	for len(rest) > 0 {
		l, k := binary.Uvarint(rest)
		if k <= 0 || l > uint64(len(rest)-k) {
			return bad("truncated message")
		}
		msg := rest[k : k+int(l)]
		rest = rest[k+int(l):]
		p, _, err := MessageHeader(msg)
		if err != nil {
			return 0, nil, fmt.Errorf("cluster: snapshot object: %w", err)
		}
		if p >= int(cnt) {
			return bad("message of partition " + strconv.Itoa(p) + " past the count")
		}
		if err := fn(p, msg); err != nil {
			return 0, nil, err
		}
	}
	return created, seqs, nil
}

// encodeSnapshot encodes the engine's store as a snapshot object that
// covers seqs: every update applied up to them is in the store (seqs were
// read before the store), so the object holds at least what they cover.
func (n *Node) encodeSnapshot(seqs []uint64) ([]byte, int) {
	parts := len(n.parts)
	type acc struct {
		es    []wal.Entry
		arena []byte
	}
	accs := make([]acc, parts)
	out := appendSnapshotHeader(nil, n.created, seqs)
	var idx []int32
	var msg []byte
	flush := func(p int) {
		a := &accs[p]
		if len(a.es) == 0 {
			return
		}
		idx = idx[:0]
		for i := range a.es {
			idx = append(idx, int32(i))
		}
		msg = AppendMessage(msg[:0], p, a.es, idx)
		out = binary.AppendUvarint(out, uint64(len(msg)))
		out = append(out, msg...)
		a.es, a.arena = a.es[:0], a.arena[:0]
	}
	count := 0
	n.opts.Engine.Store().RangeUpdates(func(u *store.Update) bool {
		p := Partition(u.ID, parts)
		a := &accs[p]
		if len(a.es) == 0 && cap(a.arena) == 0 {
			a.arena = make([]byte, 0, maxMessageUpdates*24)
		}
		if len(a.arena)+len(u.ID) > cap(a.arena) {
			flush(p)
		}
		start := len(a.arena)
		a.arena = append(a.arena, u.ID...)
		var e wal.Entry
		e.SetUpdate(u)
		e.ID = a.arena[start:len(a.arena):len(a.arena)]
		a.es = append(a.es, e)
		count++
		if len(a.es) == maxMessageUpdates {
			flush(p)
		}
		return true
	})
	for p := range accs {
		flush(p)
	}
	return out, count
}

// snapshotLoop publishes a snapshot every Options.SnapshotEvery when this
// node has applied past the one the store holds.
func (n *Node) snapshotLoop() {
	t := time.NewTicker(n.opts.SnapshotEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if err := n.PublishSnapshot(); err != nil {
			n.snap.errors.Add(1)
			n.app.rateLog(n.log, "could not publish a snapshot to the object store", "err", err)
		}
	}
}

// PublishSnapshot publishes this node's store, with the positions it
// covers, as the object store's newest snapshot, unless the one there
// already covers as much (another node published it) or covers more on
// some partition (a snapshot never replaces one it does not cover: the
// stream may be purged below that one's positions). After a put it
// purges each partition below the positions of the newest snapshot put
// at least Options.Retain ago, never past the one it replaced (see
// doc.go, Retention).
func (n *Node) PublishSnapshot() error {
	seqs := make([]uint64, len(n.parts))
	for i, p := range n.parts {
		seqs[i] = p.applied.Load()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var prev []uint64 // the positions of the snapshot this one replaces
	if info, err := n.obj.GetInfo(ctx, snapshotObject); err == nil {
		prev = n.snapshotPositions(info)
		n.seeLatest(prev)
		n.noteSnapshot(prev, info.ModTime)
		// One node a period publishes: the nodes' tickers run at
		// different phases, and each skips a snapshot younger than half
		// a period (three nodes each putting 16 MB a minute for a 1M
		// fleet would triple the object store's writes for nothing).
		if prev != nil && n.opts.SnapshotEvery > 0 && time.Since(info.ModTime) < n.opts.SnapshotEvery/2 {
			return nil
		}
		if prev != nil && (!covers(seqs, prev) || slicesEqual(seqs, prev)) {
			// This node is behind the one there on some partition (a
			// node further on publishes), or has nothing new.
			return nil
		}
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("cluster: snapshot info: %w", err)
	}
	start := time.Now()
	b, count := n.encodeSnapshot(seqs)
	marks := marksOf(seqs)
	_, err := n.obj.Put(ctx, jetstream.ObjectMeta{Name: snapshotObject,
		Metadata: map[string]string{"positions": Token(marks).String(), "created": strconv.FormatInt(n.created, 10),
			"node": n.opts.Name, "trucks": strconv.Itoa(count)}}, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("cluster: putting the snapshot: %w", err)
	}
	n.snap.published.Add(1)
	n.snap.bytes.Store(int64(len(b)))
	n.seeLatest(seqs)
	n.log.Info("snapshot published to the object store", "trucks", count, "bytes", len(b), "positions", Token(marks).String(),
		"took", time.Since(start).Round(time.Millisecond))
	if prev != nil && !n.opts.KeepAll {
		if floors := n.retainFloors(prev); floors != nil {
			n.purge(floors)
		}
	}
	return nil
}

// restoreSnapshot starts an empty node from the object store's newest
// snapshot: its trucks applied to the engine, and every partition's
// applied sequence set to what it covers, so that only the stream's
// tail is read. No snapshot (or one of another stream): false. reset:
// the node holds an old state (it fell behind the stream's retention),
// cleared where the snapshot would not overwrite it (clearForSnapshot).
// A snapshot the stream was purged past (a publisher that raced another)
// is refused: its tail is gone.
func (n *Node) restoreSnapshot(reset bool) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	info, err := n.obj.GetInfo(ctx, snapshotObject)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster: snapshot info: %w", err)
	}
	if info.Metadata["created"] != strconv.FormatInt(n.created, 10) {
		n.log.Warn("the object store's snapshot is of another stream; reading the whole stream", "snapshot_created", info.Metadata["created"])
		return false, nil
	}
	if pos := n.snapshotPositions(info); pos == nil {
		return false, fmt.Errorf("cluster: the snapshot's positions %q are unreadable", info.Metadata["positions"])
	} else if p, first, err := n.behindAny(pos, pos); err != nil {
		return false, err
	} else if p >= 0 {
		return false, fmt.Errorf("%w: it covers partition %d up to seq %d, the stream holds it from seq %d (the next snapshot will do)", errPurgedPast, p, pos[p], first)
	}
	start := time.Now()
	b, err := n.obj.GetBytes(ctx, snapshotObject) // checks the object's SHA-256 digest
	if err != nil {
		return false, fmt.Errorf("cluster: fetching the snapshot: %w", err)
	}
	// Check everything before applying anything.
	created, seqs, err := decodeSnapshot(b, func(p int, msg []byte) error {
		return DecodeMessage(msg, p, len(n.parts), func(*wal.Entry) {})
	})
	if err != nil {
		return false, err
	}
	if created != n.created || len(seqs) != len(n.parts) {
		return false, fmt.Errorf("cluster: the snapshot covers %d partitions of a stream created at %d; the stream has %d, created at %d", len(seqs), created, len(n.parts), n.created)
	}
	cleared := 0
	if reset {
		if cleared, err = n.clearForSnapshot(b); err != nil {
			return false, err
		}
	}
	var ab applyBatch
	count := 0
	_, _, err = decodeSnapshot(b, func(p int, msg []byte) error {
		if err := ab.gather(msg, p, len(n.parts), func() {}, func([]byte) {}); err != nil {
			return err
		}
		count += len(ab.ups)
		if _, err := n.opts.Engine.Apply(ab.ups); err != nil {
			return fmt.Errorf("cluster: applying the snapshot: %w", err)
		}
		ab.reset()
		return nil
	})
	if err != nil {
		return false, err
	}
	for i, s := range seqs {
		n.parts[i].applied.Store(s)
	}
	n.snap.restored.Store(true)
	n.log.Info("restored from the object-store snapshot", "trucks", count, "bytes", len(b), "by", info.Metadata["node"], "old_trucks_deleted", cleared,
		"applied", Token(n.appliedMarks()).String(), "took", time.Since(start).Round(time.Millisecond))
	return true, nil
}
