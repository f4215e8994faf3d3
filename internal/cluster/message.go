package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wal"
)

// messageVersion is the first byte of every message on the stream.
const messageVersion = 1

// ErrMalformed is wrapped by every error DecodeMessage returns.
var ErrMalformed = errors.New("cluster: malformed message")

// Partition is the partition of a truck ID among n: FNV-1a (32 bits) of
// the ID mod n. Every node must compute the same, so it is spelled out
// here rather than borrowed from a hash whose seed differs per process.
func Partition(id []byte, n int) int {
	h := uint32(2166136261)
	for _, c := range id {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % uint32(n))
}

// AppendMessage appends the message of partition p carrying the entries
// batch[i] for i in idx, in idx order, and returns the extended slice (see
// doc.go for the layout). idx is sorted stably by ID first, so that the
// update codec's prefix compression finds shared prefixes; updates of one
// truck keep their batch order.
func AppendMessage(dst []byte, p int, batch []wal.Entry, idx []int32) []byte {
	slices.SortStableFunc(idx, func(a, b int32) int { return bytes.Compare(batch[a].ID, batch[b].ID) })
	dst = append(dst, messageVersion)
	dst = binary.AppendUvarint(dst, uint64(p))
	return wal.AppendUpdatesFunc(dst, len(idx), func(i int, e *wal.Entry) { *e = batch[idx[i]] })
}

// MessageHeader reads the version and partition of a message and returns
// the update batch that follows.
func MessageHeader(msg []byte) (p int, batch []byte, err error) {
	if len(msg) == 0 {
		return 0, nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if msg[0] != messageVersion {
		return 0, nil, fmt.Errorf("%w: unknown version %d", ErrMalformed, msg[0])
	}
	v, n := binary.Uvarint(msg[1:])
	if n <= 0 || v > maxPartitions {
		return 0, nil, fmt.Errorf("%w: bad partition", ErrMalformed)
	}
	return int(v), msg[1+n:], nil
}

// DecodeMessage checks a message of partition want (of n) and calls fn
// for each of its entries in order (e valid during the call only).
// Nothing is delivered from a malformed message: the whole batch is
// validated first (codec, ranges the store accepts, every ID in partition
// want), so a node never applies half a message. A message is published
// by a node that validated its updates, but the stream is a network input
// like any other.
func DecodeMessage(msg []byte, want, n int, fn func(e *wal.Entry)) error {
	p, batch, err := MessageHeader(msg)
	if err != nil {
		return err
	}
	if p != want {
		return fmt.Errorf("%w: message of partition %d on the subject of partition %d", ErrMalformed, p, want)
	}
	var bad error
	err = wal.DecodeUpdates(batch, func(e *wal.Entry) {
		if bad == nil {
			bad = checkEntry(e, want, n)
		}
	})
	if err = malformed(err, bad); err != nil {
		return err
	}
	return wal.DecodeUpdates(batch, fn)
}

// checkEntry is DecodeMessage's check of one entry of partition want (of
// n): nil if a node may apply it.
func checkEntry(e *wal.Entry, want, n int) error {
	switch {
	case len(e.ID) == 0 || len(e.ID) > store.MaxIDLen:
		return fmt.Errorf("%w: ID of %d bytes", ErrMalformed, len(e.ID))
	case Partition(e.ID, n) != want:
		return fmt.Errorf("%w: %q is not in partition %d of %d", ErrMalformed, e.ID, want, n)
	case e.Kind == wal.KindUpdate:
		if u := e.Update(); !u.Position.Valid() || !u.Attrs.Valid() {
			return fmt.Errorf("%w: update of %q out of range", ErrMalformed, e.ID)
		}
	case e.Kind != wal.KindDelete:
		return fmt.Errorf("%w: entry of kind %v", ErrMalformed, e.Kind)
	}
	return nil
}

// malformed is the error of a message whose decoding failed with err or
// whose first bad entry was bad (nil if neither), wrapping ErrMalformed.
func malformed(err, bad error) error {
	if err == nil {
		err = bad
	}
	if err != nil && !errors.Is(err, ErrMalformed) {
		err = fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return err
}
