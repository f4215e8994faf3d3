package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
)

// Retention limits for pooled ingest scratch: a request that grew a buffer
// past these gives it back to the garbage collector instead of the pool, so
// one 64 MiB body does not pin 64 MiB per pooled scratch for ever.
const (
	retainIDs     = 1 << 20 // bytes of IDs
	retainUpdates = 1 << 17 // store.Update entries (5 MiB)
	retainOut     = 1 << 16 // bytes of response
)

// ingestScratch is the working memory of one POST /v1/positions.
type ingestScratch struct {
	body []byte // NDJSON: the piece being read; JSON array: the whole body
	dec  ingest.Decoder
	ids  idArena // the IDs of ups
	ups  []store.Update
	out  []byte
}

// readPiece is how much of an NDJSON body is read and decoded at a time.
// The body is never held whole: each piece's lines are converted into
// updates whose IDs are copied out (about 50 bytes a line in all, against
// the ~110 of the line itself), so a 10,000-line batch in flight holds
// ~0.6 MiB instead of ~1.6. A piece grows only to fit a longer line.
const readPiece = 64 << 10

// idArena holds copies of IDs in blocks that are reused from request to
// request and never moved, so that slices into them stay valid while the
// request's updates are applied.
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

// ingestFree bounds the ingest scratch kept between requests. A scratch
// holds a 64 KiB piece buffer and about 55 bytes per line of the last
// NDJSON batch (a 40-byte store.Update and its ID): ~0.6 MiB for a
// 10,000-line batch. A bounded free list
// rather than a sync.Pool, because a Pool drops its contents at every
// other GC, and re-growing megabytes of buffers after each GC costs
// throughput and adds garbage (BenchmarkIngestLoopback saw ~1 in 7
// requests miss).
const ingestFree = 4

func (s *Server) getIngest() *ingestScratch {
	select {
	case sc := <-s.ingestFree:
		return sc
	default:
		sc := &ingestScratch{}
		sc.dec.MaxAhead = s.maxAhead
		// The decoder converts each update straight into the store's form:
		// no second array of decoded updates per in-flight batch.
		sc.dec.Sink = func(u *ingest.Update) {
			sc.ups = append(sc.ups, store.Update{ID: sc.ids.copy(u.ID), Position: store.MakePosition(u.Lat, u.Lon, u.TS, u.Speed, u.Heading), Attrs: u.Attrs})
		}
		return sc
	}
}

func (s *Server) putIngest(sc *ingestScratch) {
	sc.dec.Reset()
	sc.ids.reset(retainIDs)
	clear(sc.ups) // the IDs: blocks reset may have dropped
	if cap(sc.body) > readPiece {
		// A JSON array body, or a piece grown for a long line.
		sc.body = nil
	}
	if cap(sc.ups) > retainUpdates {
		sc.ups = nil
	}
	if cap(sc.out) > retainOut {
		sc.out = nil
	}
	select {
	case s.ingestFree <- sc:
	default: // more requests in flight than the list keeps: let it go
	}
}

// bodyKind is how a positions body is framed.
type bodyKind uint8

const (
	kindNDJSON bodyKind = iota
	kindArray
)

// positionsKind reads the Content-Type and Content-Encoding; ok is false
// with a message for a 415.
func positionsKind(r *http.Request) (bodyKind, string, bool) {
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return 0, fmt.Sprintf("Content-Encoding %q is not supported; send the body uncompressed", enc), false
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return kindNDJSON, "", true
	}
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, "application/x-ndjson"):
		return kindNDJSON, "", true
	case strings.EqualFold(mt, "application/json"):
		return kindArray, "", true
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return 0, fmt.Sprintf("Content-Type %q is malformed; use application/x-ndjson or application/json", ct), false
	}
	return 0, fmt.Sprintf("Content-Type %q is not supported; use application/x-ndjson (one update per line) or application/json (an array of updates)", mt), false
}

// positions is POST /v1/positions; see the package doc.
func (s *Server) positions(w http.ResponseWriter, r *http.Request) {
	kind, msg, ok := positionsKind(r)
	if !ok {
		s.writeError(w, r, http.StatusUnsupportedMediaType, msg)
		return
	}
	if r.ContentLength > s.maxBody {
		s.tooLarge(w, r)
		return
	}
	sc := s.getIngest()
	defer s.putIngest(sc)

	// MaxBytesReader tells net/http's own ResponseWriter to close the
	// connection once the limit is hit (through an unexported method, so
	// hand it the unwrapped writer) instead of draining the rest.
	inner := w
	if sw, ok := w.(*statusWriter); ok {
		inner = sw.ResponseWriter
	}
	body := http.MaxBytesReader(inner, r.Body, s.maxBody)
	now := time.Now().Unix()
	var rep *ingest.Report
	sc.ups = sc.ups[:0] // filled by the decoder's sink, see getIngest
	var err error
	if kind == kindArray {
		sc.body, err = readBody(body, sc.body[:0], r.ContentLength)
		if err == nil {
			_, rep = sc.dec.DecodeArray(sc.body, now)
		}
	} else {
		rep, err = sc.readNDJSON(body, now)
	}
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			s.tooLarge(w, r)
			return
		}
		s.writeError(w, r, http.StatusBadRequest, "reading the request body: "+err.Error()+"; nothing was applied")
		return
	}
	ups := sc.ups

	var res store.Result
	if len(ups) > 0 {
		res, err = s.eng.Apply(ups)
		if err != nil {
			if errors.Is(err, engine.ErrClosed) {
				s.writeError(w, r, http.StatusServiceUnavailable, "the server is shutting down; nothing in this request was applied")
			} else {
				s.writeError(w, r, http.StatusServiceUnavailable, "could not apply the updates durably: "+err.Error()+"; nothing in this request was applied")
			}
			return
		}
	}
	if res.Invalid > 0 {
		// ingest validated every update to the store's own ranges.
		panic(fmt.Sprintf("BUG: api: the store rejected %d decoded updates as invalid", res.Invalid))
	}
	accepted := rep.Accepted - res.Refused
	s.m.accepted.Add(float64(accepted))
	s.m.rejected.Add(float64(rep.Rejected))
	if rep.Future > 0 {
		s.m.future.Add(float64(rep.Future))
		s.ts.future.Add(int64(rep.Future))
		s.noteFuture(r, rep)
	}
	if rep.Millis > 0 {
		s.m.millis.Add(float64(rep.Millis))
		s.ts.millis.Add(int64(rep.Millis))
	}

	out := sc.out[:0]
	code := http.StatusOK
	if res.Refused > 0 {
		s.m.refused.Add(float64(res.Refused))
		code = http.StatusInsufficientStorage
		out = append(out, `{"error":"fleet is at its truck limit: `...)
		out = strconv.AppendInt(out, int64(res.Refused), 10)
		if res.Refused == 1 {
			out = append(out, ` new truck`...)
		} else {
			out = append(out, ` new trucks`...)
		}
		out = append(out, ` refused; updates of known trucks were applied","refused":`...)
		out = strconv.AppendInt(out, int64(res.Refused), 10)
		out = append(out, ',')
		s.log.Warn("trucks refused: fleet at its truck limit", "refused", res.Refused, "trucks", s.st.Len())
	} else {
		out = append(out, '{')
	}
	out = appendReportBody(out, accepted, rep.Rejected, res.Stale, rep)
	out = append(out, '}')
	sc.out = out
	writeJSON(w, code, out)
}

func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("request body larger than the %s limit (fleetd serve --max-body); nothing was applied, split the batch", formatSize(s.maxBody)))
}

// readBody reads all of r into buf (reusing its capacity). hint is the
// Content-Length if known (-1 otherwise); it sizes the buffer so that a body
// of known length is read without copying as it grows.
func readBody(r io.Reader, buf []byte, hint int64) ([]byte, error) {
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

// readNDJSON reads and decodes an NDJSON body a piece at a time (see
// readPiece), the decoder's sink collecting the updates in sc.ups.
func (sc *ingestScratch) readNDJSON(r io.Reader, now int64) (*ingest.Report, error) {
	sc.dec.BeginNDJSON(now)
	buf := sc.body[:0]
	if cap(buf) < readPiece {
		buf = make([]byte, 0, readPiece)
	}
	defer func() { sc.body = buf[:0] }()
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf)) // a line longer than the buffer
		}
		start := len(buf)
		n, err := r.Read(buf[start:cap(buf)])
		buf = buf[:start+n]
		if err == io.EOF { // io.Reader returns io.EOF itself, never wrapped
			sc.dec.DecodeLines(buf)
			return sc.dec.Report(), nil
		}
		if err != nil {
			return nil, err
		}
		// buf[:start] holds no line end: it would have been decoded.
		if i := bytes.LastIndexByte(buf[start:], '\n'); i >= 0 {
			end := start + i + 1
			sc.dec.DecodeLines(buf[:end])
			buf = buf[:copy(buf, buf[end:])]
		}
	}
}

// formatSize prints a byte count the way --max-body takes it.
func formatSize(n int64) string {
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + " " + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// tsCounters count the timestamps the decoder acted on, for /v1/stats (the
// same figures as fleetd_ingest_ts_total), and rate-limit the log line
// about future ones.
type tsCounters struct {
	future, millis atomic.Int64

	mu       sync.Mutex
	logged   time.Time // last log line
	unlogged int       // future updates rejected since
}

// futureLogEvery is how often rejections of future timestamps are logged.
const futureLogEvery = time.Minute

// noteFuture logs, at most once a minute, that updates were rejected for
// a ts ahead of the server clock: a device (or a whole fleet's firmware)
// with a wrong clock is worth knowing about at 3 a.m.
func (s *Server) noteFuture(r *http.Request, rep *ingest.Report) {
	c := &s.ts
	c.mu.Lock()
	c.unlogged += rep.Future
	now := time.Now()
	if now.Sub(c.logged) < futureLogEvery {
		c.mu.Unlock()
		return
	}
	n := c.unlogged
	c.logged, c.unlogged = now, 0
	c.mu.Unlock()
	example := ""
	for _, e := range rep.Errors {
		if strings.Contains(e.Error, "ahead of the server clock") {
			example = e.Error
			break
		}
	}
	s.log.Warn("rejected updates with a ts ahead of the server clock (see --max-clock-skew)",
		"updates_since_last_line", n, "example", example, "remote", r.RemoteAddr)
}
