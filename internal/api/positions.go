package api

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
)

// retainOut bounds the response buffer a pooled scratch keeps.
const retainOut = 1 << 16

// ingestScratch is the working memory of one POST /v1/positions: the
// body reader and its updates (package ingest), and the answer.
type ingestScratch struct {
	batch ingest.Batch
	out   []byte
}

// ingestFree bounds the ingest scratch kept between requests. A scratch
// holds a 64 KiB piece buffer and about 55 bytes per line of the last
// NDJSON batch (a fleet.Update and its ID): ~0.7 MiB for a 10,000-line
// batch. A bounded free list rather than a sync.Pool, because a Pool drops
// its contents at every other GC, and re-growing megabytes of buffers
// after each GC costs throughput and adds garbage (BenchmarkIngestLoopback
// saw ~1 in 7 requests miss).
const ingestFree = 4

func (s *Server) getIngest() *ingestScratch {
	select {
	case sc := <-s.ingestFree:
		return sc
	default:
		return &ingestScratch{batch: ingest.Batch{MaxAhead: s.maxAhead}}
	}
}

func (s *Server) putIngest(sc *ingestScratch) {
	sc.batch.Reset()
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
	var err error
	if kind == kindArray {
		rep, err = sc.batch.ReadArray(body, r.ContentLength, now)
	} else {
		rep, err = sc.batch.ReadNDJSON(body, now)
	}
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			s.tooLarge(w, r)
			return
		}
		s.writeError(w, r, http.StatusBadRequest, "reading the request body: "+err.Error()+"; nothing was applied")
		return
	}
	if s.cluster != nil {
		s.positionsCluster(w, r, sc, rep)
		return
	}
	ups := sc.batch.Updates

	var res store.Result
	if len(ups) > 0 {
		res, err = s.eng.Apply(ups)
		if err != nil {
			// A batch over engine.ApplyChunk goes in pieces: those before
			// the failure are applied and durable.
			what := "nothing in this request was applied"
			if n := res.Inserted + res.Updated + res.Stale + res.Refused; n > 0 {
				what = fmt.Sprintf("the first %d updates of this request were processed and are durable, the other %d were not; resending the whole request is safe", n, len(ups)-n)
			}
			if errors.Is(err, engine.ErrClosed) {
				s.writeError(w, r, http.StatusServiceUnavailable, "the server is shutting down; "+what)
			} else {
				s.writeError(w, r, http.StatusServiceUnavailable, "could not apply the updates durably: "+err.Error()+"; "+what)
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
