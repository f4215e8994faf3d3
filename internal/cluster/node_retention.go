package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

// retentionCounters count the stream's purges and what they did to
// nodes that fell behind them (see doc.go, Retention).
type retentionCounters struct {
	purges      atomic.Int64 // partition purges this node asked for and JetStream did
	purgeErrors atomic.Int64
	// purgedTo[p] is the highest floor this node purged partition p to:
	// every message of p below it is gone (others may have purged further).
	purgedTo []atomic.Uint64
	// behindAtStart: at Open the saved positions were below what the
	// stream still holds, so the node restored from the object store.
	behindAtStart atomic.Bool
	// gaps counts partitions this node stopped applying at run time
	// because the stream was purged past what it had applied.
	gaps atomic.Int64
	// latest is the newest snapshot positions this node has seen (its
	// own, or read from the object store): an upper bound of every
	// floor purged so far (nil before one is seen).
	latest atomic.Pointer[[]uint64]

	// seen are the object store's snapshots this node has seen, oldest
	// first, for Options.Retain (PublishSnapshot's goroutine; mu for
	// tests that call it too).
	mu   sync.Mutex
	seen []seenSnapshot
}

// seenSnapshot is a snapshot's positions and when it was put.
type seenSnapshot struct {
	at   time.Time
	seqs []uint64
}

// noteSnapshot records that the object store's snapshot, put at at,
// covers seqs. At most about 1,024 are kept per Retain: one is skipped
// when the last kept is younger than Retain/1024.
func (n *Node) noteSnapshot(seqs []uint64, at time.Time) {
	if n.opts.Retain < 0 || seqs == nil {
		return
	}
	n.ret.mu.Lock()
	defer n.ret.mu.Unlock()
	if k := len(n.ret.seen); k > 0 && at.Sub(n.ret.seen[k-1].at) < n.opts.Retain/1024 {
		return
	}
	n.ret.seen = append(n.ret.seen, seenSnapshot{at, slices.Clone(seqs)})
}

// retainFloors is what the stream may be purged below once a snapshot
// has replaced the one covering prev: prev itself with Retain negative;
// otherwise the newest snapshot seen that was put at least Retain ago
// and is covered by prev (nil when there is none yet). Older ones are
// forgotten.
func (n *Node) retainFloors(prev []uint64) []uint64 {
	if n.opts.Retain < 0 {
		return prev
	}
	n.ret.mu.Lock()
	defer n.ret.mu.Unlock()
	cut, pick := time.Now().Add(-n.opts.Retain), -1
	for i, s := range n.ret.seen {
		if s.at.After(cut) {
			break
		}
		if covers(prev, s.seqs) {
			pick = i
		}
	}
	if pick < 0 {
		return nil
	}
	floors := n.ret.seen[pick].seqs
	n.ret.seen = slices.Delete(n.ret.seen, 0, pick)
	return floors
}

// errPurgedPast is wrapped by restoreSnapshot's error when the stream was
// purged past the snapshot: its tail is gone.
var errPurgedPast = errors.New("cluster: the stream was purged past the object-store snapshot")

// covers reports whether positions a are at least b on every partition.
func covers(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] < b[i] {
			return false
		}
	}
	return true
}

// purge removes each partition's messages below floors[p] (keeping the
// message at floors[p] itself: see doc.go). Purges are idempotent and
// monotone in JetStream (a floor at or below one already purged removes
// nothing), so several nodes purging at once is harmless.
func (n *Node) purge(floors []uint64) {
	done := 0
	for i, f := range floors {
		if f <= 1 || f <= n.ret.purgedTo[i].Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.stream.Purge(ctx, jetstream.WithPurgeSubject(n.subj+strconv.Itoa(i)), jetstream.WithPurgeSequence(f))
		cancel()
		if err != nil {
			n.ret.purgeErrors.Add(1)
			n.app.rateLog(n.log, "could not purge a partition of the stream below the previous snapshot; retried after the next snapshot",
				"partition", i, "below_seq", f, "err", err)
			continue
		}
		n.ret.purges.Add(1)
		n.ret.purgedTo[i].Store(f)
		done++
	}
	if done > 0 {
		n.log.Info("purged the stream below the previous object-store snapshot", "partitions", done, "below", Token(marksOf(floors)).String())
	}
}

func marksOf(seqs []uint64) []Mark {
	m := make([]Mark, len(seqs))
	for i, s := range seqs {
		m[i] = Mark{i, s}
	}
	return m
}

// firstOf returns the first message of partition p the stream still
// holds (ok false: none).
func (n *Node) firstOf(ctx context.Context, p int) (seq uint64, ok bool, err error) {
	m, err := n.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(n.subj+strconv.Itoa(p)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return m.Sequence, true, nil
}

// behindPurge reports whether a node (or a snapshot) that has applied
// partition p up to applied may lack messages of p that were purged:
// the stream keeps a suffix of each partition, so nothing after applied
// is gone if applied is at or past the partition's first message. Below
// it, a nonzero applied was itself purged: something after it may have
// been too (conservative: the node restores instead). applied 0 is behind
// only if the first message could be a purge's floor, i.e. a snapshot
// covers it (floors are snapshot positions; latest nil: none yet).
func (n *Node) behindPurge(ctx context.Context, p int, applied uint64, latest []uint64) (bool, uint64, error) {
	first, ok, err := n.firstOf(ctx, p)
	if err != nil || !ok || applied >= first {
		return false, first, err
	}
	if applied > 0 {
		return true, first, nil
	}
	return latest != nil && p < len(latest) && first <= latest[p], first, nil
}

// behindAny is behindPurge over every partition: the first partition
// behind (-1: none) and the first message the stream holds of it.
func (n *Node) behindAny(seqs, latest []uint64) (int, uint64, error) {
	for p, a := range seqs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		behind, first, err := n.behindPurge(ctx, p, a, latest)
		cancel()
		if err != nil {
			return -1, 0, fmt.Errorf("cluster: reading the first message of partition %d: %w", p, err)
		}
		if behind {
			return p, first, nil
		}
	}
	return -1, 0, nil
}

// latestPositions reads the positions the object store's newest snapshot
// covers; nil when there is none of this stream.
func (n *Node) latestPositions() ([]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := n.obj.GetInfo(ctx, snapshotObject)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot info: %w", err)
	}
	return n.snapshotPositions(info), nil
}

// snapshotPositions is what a snapshot object's metadata says it covers,
// nil if it is of another stream or unreadable.
func (n *Node) snapshotPositions(info *jetstream.ObjectInfo) []uint64 {
	if info.Metadata["created"] != strconv.FormatInt(n.created, 10) {
		return nil
	}
	seqs, err := parsePositions(info.Metadata["positions"], len(n.parts))
	if err != nil {
		return nil
	}
	return seqs
}

// parsePositions reads a snapshot's "positions" metadata: a token's text
// form with every partition of n once, where (unlike a client's token) a
// partition nothing was applied of has sequence 0.
func parsePositions(s string, n int) ([]uint64, error) {
	seqs := make([]uint64, n)
	seen := make([]bool, n)
	for part := range strings.SplitSeq(s, ",") {
		ps, ss, ok := strings.Cut(part, ":")
		p, perr := strconv.ParseUint(ps, 10, 16)
		seq, serr := strconv.ParseUint(ss, 10, 64)
		if !ok || perr != nil || serr != nil || int(p) >= n || seen[p] {
			return nil, fmt.Errorf("cluster: snapshot positions %q: bad mark %q", s, part)
		}
		seqs[p], seen[p] = seq, true
	}
	for p, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("cluster: snapshot positions %q: no partition %d", s, p)
		}
	}
	return seqs, nil
}

// seeLatest records positions of a snapshot known to exist.
func (n *Node) seeLatest(seqs []uint64) {
	if seqs == nil {
		return
	}
	for {
		old := n.ret.latest.Load()
		if old != nil && covers(*old, seqs) {
			return
		}
		c := slices.Clone(seqs)
		if old != nil {
			for i := range c {
				c[i] = max(c[i], (*old)[i])
			}
		}
		if n.ret.latest.CompareAndSwap(old, &c) {
			return
		}
	}
}

// startPositions decides, at Open, where the node starts: after its saved
// positions if the stream still holds everything after them; else (or
// when it starts empty) from the object store's snapshot; and it refuses
// to start, rather than serve a fleet with a gap, when the stream's
// beginning is purged and no usable snapshot exists.
func (n *Node) startPositions() error {
	var latest []uint64
	err := retryStart(func() (err error) { latest, err = n.latestPositions(); return err })
	if err != nil {
		return err
	}
	n.seeLatest(latest)
	empty := n.empty()
	if !empty {
		seqs := make([]uint64, len(n.parts))
		for i, p := range n.parts {
			seqs[i] = p.applied.Load()
		}
		var p int
		var first uint64
		err := retryStart(func() (err error) { p, first, err = n.behindAny(seqs, latest); return err })
		if err != nil {
			return err
		}
		if p < 0 {
			return nil
		}
		n.ret.behindAtStart.Store(true)
		n.log.Warn("the saved stream positions are below what the stream still holds (it was purged after a newer object-store snapshot): restoring from that snapshot instead of resuming, which would skip the purged updates",
			"partition", p, "applied", seqs[p], "stream_first_seq_of_partition", first, "saved", Token(marksOf(seqs)).String(), "trucks", n.opts.Engine.Store().Len())
	}
	ok, rerr := n.restoreSnapshot(!empty)
	if rerr == nil && ok {
		return nil
	}
	if rerr != nil {
		n.snap.errors.Add(1)
	}
	why := "there is no snapshot of this stream in the object store"
	if rerr != nil {
		why = rerr.Error()
	}
	if !empty {
		return fmt.Errorf("cluster: refusing to start: the stream %q was purged past this node's saved positions and it cannot restore from the object-store snapshot (%s); resuming would serve a fleet with a gap; it can start once the object store holds a snapshot of this stream that the stream still has the tail of (a running node publishes one every snapshot period, --nats-snapshot-every)",
			n.opts.Stream, why)
	}
	// Not restored: reading the whole stream is right only if nothing
	// of it was purged.
	for _, p := range n.parts {
		p.applied.Store(0)
	}
	var p int
	var first uint64
	err = retryStart(func() (err error) { p, first, err = n.behindAny(make([]uint64, len(n.parts)), latest); return err })
	if err != nil {
		return err
	}
	if p >= 0 {
		return fmt.Errorf("cluster: refusing to start: partition %d of the stream %q was purged below seq %d and this node cannot restore from the object-store snapshot (%s); reading the rest would serve a fleet with a gap",
			p, n.opts.Stream, first, why)
	}
	if errors.Is(rerr, errPurgedPast) {
		return fmt.Errorf("cluster: refusing to start: %w; reading the stream would serve a fleet with a gap: start again after the next snapshot", rerr)
	}
	if rerr != nil {
		// Harmless: what it applied is applied again from the stream.
		n.log.Warn("could not restore from the object-store snapshot; reading the whole stream", "err", rerr)
	}
	return nil
}

// retryStart retries fn (a look at the stream or the object store at
// Open) for up to 30 s: just after the NATS servers start, or while one
// is elected leader, requests time out.
func retryStart(fn func() error) error {
	giveUp := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil || time.Now().After(giveUp) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkGap is the watcher's look at partition p when it is behind the
// stream: if the stream was purged past what p applied, p stops applying
// (what follows would leave a gap) and its saved position becomes 0, so
// that a restart restores from the object store.
func (n *Node) checkGap(p *partition) {
	a := p.applied.Load()
	if p.gap.Load() || p.last.Load() <= a {
		return
	}
	var latest []uint64
	if l := n.ret.latest.Load(); l != nil {
		latest = *l
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	behind, first, err := n.behindPurge(ctx, p.n, a, latest)
	cancel()
	if err != nil || !behind {
		return
	}
	if p.applied.Load() >= first {
		return // applied meanwhile what it was missing
	}
	p.gap.Store(true)
	n.ret.gaps.Add(1)
	n.log.Error("this node fell behind the stream's retention: the partition was purged past what it applied; it stops applying the partition (reads of it answer 503) and must be restarted, to restore from the object-store snapshot",
		"partition", p.n, "applied", a, "stream_first_seq_of_partition", first)
}

// gapPartitions lists the partitions stopped by checkGap.
func (n *Node) gapPartitions() []int {
	var g []int
	for _, p := range n.parts {
		if p.gap.Load() {
			g = append(g, p.n)
		}
	}
	return g
}

// idKey is a 128-bit hash of a truck ID (two maphash seeds): the restore
// over a node's old state tells the snapshot's trucks from the others
// with 16 bytes a truck (16 MB for 1M trucks, freed after), not a map of
// strings. A collision (p ≈ n²/2¹²⁹) would keep a truck the snapshot
// does not hold.
type idKey [2]uint64

var idSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func keyOf(id []byte) idKey {
	return idKey{maphash.Bytes(idSeeds[0], id), maphash.Bytes(idSeeds[1], id)}
}

func cmpKey(a, b idKey) int {
	if c := cmp.Compare(a[0], b[0]); c != 0 {
		return c
	}
	return cmp.Compare(a[1], b[1])
}

// clearForSnapshot deletes, before a snapshot b is applied over a node's
// old state, every truck the result would get wrong: those the snapshot
// does not hold (deleted or expired in the updates the node missed) and
// those it holds with an older ts than the node's (latest wins by ts:
// the snapshot's would be refused). The others are overwritten by the
// snapshot (same ts: the update applied last wins). It returns how many
// it deleted.
func (n *Node) clearForSnapshot(b []byte) (int, error) {
	st := n.opts.Engine.Store()
	var keys []idKey
	var drop [][]byte
	_, _, err := decodeSnapshot(b, func(p int, msg []byte) error {
		return DecodeMessage(msg, p, len(n.parts), func(e *wal.Entry) {
			keys = append(keys, keyOf(e.ID))
			if have, ok := st.Get(e.ID); ok && have.TS > e.TS {
				drop = append(drop, slices.Clone(e.ID))
			}
		})
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(keys, cmpKey)
	st.RangeUpdates(func(u *store.Update) bool {
		if _, found := slices.BinarySearchFunc(keys, keyOf(u.ID), cmpKey); !found {
			drop = append(drop, slices.Clone(u.ID))
		}
		return true
	})
	keys = nil
	for _, id := range drop {
		if _, err := n.opts.Engine.Delete(id); err != nil {
			return 0, fmt.Errorf("cluster: clearing the old state for the snapshot: %w", err)
		}
	}
	return len(drop), nil
}
