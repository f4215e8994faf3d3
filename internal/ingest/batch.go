package ingest

import (
	"bytes"
	"io"
	"slices"

	"github.com/fleetd/fleetd/internal/fleet"
)

// Batch reads one request body into fleet updates: the body reader of
// every front door that takes fleetd's own formats (POST /v1/positions,
// NDJSON payloads from brokers). It wraps a Decoder, converting each
// accepted update straight into fleet.Update (fixed point, IDs copied into
// the Batch's arena), so that no second array of decoded updates exists
// per batch in flight.
//
// A Batch is reused from request to request (keep a few in a free list;
// call Reset between uses). It is not safe for concurrent use.
type Batch struct {
	// MaxAhead is the decoder's clock-skew limit (Decoder.MaxAhead).
	MaxAhead int64
	// Updates are the accepted updates of the last Read*, in body order.
	// Their IDs live in the Batch's arena: valid until the next Reset.
	Updates []fleet.Update

	dec  Decoder
	ids  idArena
	body []byte // NDJSON: the piece being read; JSON array: the whole body
}

// ReadPiece is how much of an NDJSON body is read and decoded at a time.
// The body is never held whole: each piece's lines are converted into
// updates whose IDs are copied out (about 50 bytes a line in all, against
// the ~110 of the line itself), so a 10,000-line batch in flight holds
// ~0.6 MiB instead of ~1.6. A piece grows only to fit a longer line.
const ReadPiece = 64 << 10

// Retention limits for Reset: a Batch that grew a buffer past these gives
// it back to the garbage collector, so one 64 MiB body does not pin 64 MiB
// per kept Batch for ever.
const (
	retainIDs          = 1 << 20 // bytes of IDs
	retainBatchUpdates = 1 << 17 // fleet.Update entries (~10 MiB)
)

func (b *Batch) begin() {
	b.Updates = b.Updates[:0]
	b.dec.MaxAhead = b.MaxAhead
	if b.dec.Sink == nil {
		b.dec.Sink = b.add
	}
}

func (b *Batch) add(u *Update) {
	b.Updates = append(b.Updates, fleet.Update{
		ID:       b.ids.copy(u.ID),
		Position: fleet.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading),
		Attrs:    u.Attrs,
	})
}

// ReadNDJSON reads and decodes an application/x-ndjson body a piece at a
// time; now is the default ts. A read error (a body cut off, over its
// size limit) is returned as is, and the Batch then holds a partial
// result that the caller must not apply.
func (b *Batch) ReadNDJSON(r io.Reader, now int64) (*Report, error) {
	b.begin()
	b.dec.BeginNDJSON(now)
	buf := b.body[:0]
	if cap(buf) < ReadPiece {
		buf = make([]byte, 0, ReadPiece)
	}
	defer func() { b.body = buf[:0] }()
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf)) // a line longer than the buffer
		}
		start := len(buf)
		n, err := r.Read(buf[start:cap(buf)])
		buf = buf[:start+n]
		if err == io.EOF { // io.Reader returns io.EOF itself, never wrapped
			b.dec.DecodeLines(buf)
			return b.dec.Report(), nil
		}
		if err != nil {
			return nil, err
		}
		// buf[:start] holds no line end: it would have been decoded.
		if i := bytes.LastIndexByte(buf[start:], '\n'); i >= 0 {
			end := start + i + 1
			b.dec.DecodeLines(buf[:end])
			buf = buf[:copy(buf, buf[end:])]
		}
	}
}

// ReadArray reads a whole application/json body (a JSON array of update
// objects) and decodes it; hint is its Content-Length, or -1.
func (b *Batch) ReadArray(r io.Reader, hint, now int64) (*Report, error) {
	b.begin()
	var err error
	b.body, err = readAll(r, b.body[:0], hint)
	if err != nil {
		return nil, err
	}
	_, rep := b.dec.DecodeArray(b.body, now)
	return rep, nil
}

// Reset drops the Batch's references into the last body and gives back
// buffers grown by an unusually large one. Updates become invalid.
func (b *Batch) Reset() {
	b.dec.Reset()
	b.ids.reset(retainIDs)
	clear(b.Updates) // the IDs: blocks reset may have dropped
	b.Updates = b.Updates[:0]
	if cap(b.Updates) > retainBatchUpdates {
		b.Updates = nil
	}
	if cap(b.body) > ReadPiece {
		// A JSON array body, or a piece grown for a long line.
		b.body = nil
	}
}

// readAll reads all of r into buf (reusing its capacity). hint is the
// Content-Length if known (-1 otherwise); it sizes the buffer so that a body
// of known length is read without copying as it grows.
func readAll(r io.Reader, buf []byte, hint int64) ([]byte, error) {
	buf = buf[:0]
	if hint >= 0 && int64(cap(buf)) < hint+1 {
		// +1: the read that sees EOF needs room, or the buffer would grow.
		buf = make([]byte, 0, hint+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF { // io.Reader returns io.EOF itself, never wrapped
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// idArena holds copies of IDs in blocks that are reused from batch to batch
// and never moved, so that slices into them stay valid while the batch's
// updates are applied.
type idArena struct {
	blocks [][]byte
	cur    int // the block being filled
}

const idBlock = 32 << 10 // bytes; an ID is at most 64

// copy returns a copy of id carved from the arena.
func (a *idArena) copy(id []byte) []byte {
	for ; a.cur < len(a.blocks); a.cur++ {
		if b := a.blocks[a.cur]; len(b)+len(id) <= cap(b) {
			off := len(b)
			b = append(b, id...)
			a.blocks[a.cur] = b
			return b[off:len(b):len(b)]
		}
	}
	a.blocks = append(a.blocks, make([]byte, 0, max(idBlock, len(id))))
	return a.copy(id)
}

// reset empties the arena, keeping at most keep bytes of blocks.
func (a *idArena) reset(keep int) {
	for i := range a.blocks {
		if (i+1)*idBlock > keep {
			clear(a.blocks[i:])
			a.blocks = a.blocks[:i]
			break
		}
		a.blocks[i] = a.blocks[i][:0]
	}
	a.cur = 0
}
