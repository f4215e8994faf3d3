package feed

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/fleetd/fleetd/internal/wire"
)

// A batch of encoded events is written out (one SSE write, one WebSocket
// message) once it reaches this size, even if more events are pending.
// WebSocket batches stay well under the 32 KiB that many client libraries
// (github.com/coder/websocket among them) accept by default; one event is
// at most about 1 KiB.
const (
	sseBatchBytes = 64 << 10
	wsBatchBytes  = 16 << 10
)

// endReason says why a subscriber's pump stopped.
type endReason int

const (
	endClosed  endReason = iota + 1 // Hub.Close
	endGone                         // the client went away or a write failed
	endStalled                      // behind for Stall, or a write did not complete within Stall
)

// sink is a transport to one client. Every call is bounded by the hub's
// Stall (write deadlines for SSE, context timeouts for WebSocket).
type sink interface {
	write(p []byte) error // one batch: SSE bytes or one WebSocket message
	flush() error         // push written batches to the client
	ping() error          // keep-alive when idle
}

// pump moves a subscriber's events to its client. It runs on the
// handler's goroutine; its memory is the take buffer and one batch.
type pump struct {
	h      *Hub
	s      *subscriber
	k      sink
	ws     bool // frame batches as JSON arrays (WebSocket) instead of SSE data lines
	limit  int  // batch size that triggers a write
	t      *takeBuf
	buf    []byte
	nev    uint64 // data events in buf
	nitems int    // items in buf, lag notices included
	wrote  bool   // a batch was written since the last flush

	paceTimer *time.Timer // waits for the wide frames' budget; nil until needed
}

// pumpBufs are a pump's take and batch buffers, pooled in the hub so that
// a reconnecting client does not allocate them anew (about 40 KiB, and the
// batch buffer's growth to its write size).
type pumpBufs struct {
	t   *takeBuf
	buf []byte
}

func newPump(h *Hub, s *subscriber, k sink, ws bool) *pump {
	p := &pump{h: h, s: s, k: k, ws: ws, limit: sseBatchBytes}
	if ws {
		p.limit = wsBatchBytes
	}
	if b, _ := h.pumpBufs.Get().(*pumpBufs); b != nil {
		p.t, p.buf = b.t, b.buf[:0]
	} else {
		p.t, p.buf = newTakeBuf(), make([]byte, 0, 4096)
	}
	return p
}

// release gives the pump's buffers back to the hub; the pump must not be
// used after.
func (p *pump) release() {
	p.h.pumpBufs.Put(&pumpBufs{t: p.t, buf: p.buf[:0]})
	p.t, p.buf = nil, nil
}

// run delivers events until the hub closes, the client goes away or the
// subscriber stalls. Writes happen at most every FlushInterval (sooner if
// half the ring fills); an idle client gets a ping every Heartbeat.
func (p *pump) run(ctx context.Context) endReason {
	h := p.h
	flushEvery := int64(h.opt.FlushInterval)
	stall := int64(h.opt.Stall)
	lastFlush := h.clock() - flushEvery
	lastSend := h.clock()
	timer := time.NewTimer(h.opt.Heartbeat)
	defer timer.Stop()
	urgent := false // woken because the ring is half full
	for {
		if urgent || h.clock()-lastFlush >= flushEvery {
			wrote, r := p.drain(ctx)
			if r != 0 {
				return r
			}
			if wrote {
				lastFlush = h.clock()
				lastSend = lastFlush
			}
		}
		pending, behind := p.s.sleep()
		now := h.clock()
		if behind != 0 && now-behind >= stall {
			return p.stalled()
		}
		var d int64
		if pending {
			d = lastFlush + flushEvery - now
			if d <= 0 {
				continue
			}
		} else {
			d = lastSend + int64(h.opt.Heartbeat) - now
			if d <= 0 {
				if err := p.k.ping(); err != nil {
					return p.writeFailed(err)
				}
				lastSend = h.clock()
				d = int64(h.opt.Heartbeat)
			}
		}
		timer.Reset(time.Duration(d))
		select {
		case <-p.s.wake:
			// With events pending, only a half-full ring wakes us: drain
			// now rather than lose events to the flush interval. From
			// idle, the first event waits for the interval like others.
			urgent = pending
		case <-timer.C:
			urgent = false
		case <-h.quit:
			return endClosed
		case <-ctx.Done():
			return endGone
		}
	}
}

// drain takes and writes everything pending, then flushes.
func (p *pump) drain(ctx context.Context) (wrote bool, r endReason) {
	stall := int64(p.h.opt.Stall)
	p.wrote = false
	// A wide subscriber's frame first, then its control events: an expiry
	// removes the truck from frames still being built, so a frame never
	// brings back a truck after its expiry was written.
	if p.s.cls != nil {
		if err := p.writeFrame(ctx); err != nil {
			if errors.Is(err, errHubClosed) {
				return p.wrote, endClosed
			}
			return p.wrote, p.writeFailed(err)
		}
	}
	for {
		got, behind := p.s.take(p.t)
		if got {
			if err := p.encode(); err != nil {
				return p.wrote, p.writeFailed(err)
			}
		}
		if behind != 0 && p.h.clock()-behind >= stall {
			return p.wrote, p.stalled()
		}
		if !got {
			break
		}
		select {
		case <-p.h.quit:
			return p.wrote, endClosed
		case <-ctx.Done():
			return p.wrote, endGone
		default:
		}
	}
	if len(p.buf) > 0 {
		if err := p.send(); err != nil {
			return p.wrote, p.writeFailed(err)
		}
	}
	if p.wrote {
		if err := p.k.flush(); err != nil {
			return p.wrote, p.writeFailed(err)
		}
	}
	return p.wrote, 0
}

func (p *pump) stalled() endReason {
	p.h.stalls.Add(1)
	return endStalled
}

// writeFailed classifies a write error: a deadline means the client did
// not take the bytes within Stall; anything else means it is gone.
func (p *pump) writeFailed(err error) endReason {
	if errors.Is(err, context.Canceled) {
		return endGone // the request context: the client left during a paced wait
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return p.stalled()
	}
	return endGone
}

// encode appends the taken chunk to the batch: the lag notice first, then
// control and position events merged back into publish order. It writes
// the batch out whenever it reaches the limit.
func (p *pump) encode() error {
	t := p.t
	if t.lag != 0 && p.s.m.types&typeLag != 0 {
		p.open()
		p.buf = appendLag(p.buf, t.lag)
		if err := p.end(false); err != nil {
			return err
		}
	}
	ci, off := 0, 0
	for k, n := range t.posLens {
		seq := t.posFirst + uint64(k)
		for ; ci < len(t.ctl) && t.ctl[ci].mark <= seq; ci++ {
			p.open()
			p.buf = appendCtl(p.buf, &t.ctl[ci])
			if err := p.end(true); err != nil {
				return err
			}
		}
		end := off + int(n)
		if p.ws {
			p.open()
			p.buf = append(p.buf, posPrefix...)
		} else { // open() and posPrefix in one append
			p.buf = append(p.buf, "data: "+posPrefix...)
			p.nitems++
		}
		p.buf = append(p.buf, t.pos[off:end]...)
		off = end
		if err := p.end(true); err != nil {
			return err
		}
	}
	for ; ci < len(t.ctl); ci++ {
		p.open()
		p.buf = appendCtl(p.buf, &t.ctl[ci])
		if err := p.end(true); err != nil {
			return err
		}
	}
	return nil
}

// open starts an event in the batch's framing.
func (p *pump) open() {
	switch {
	case !p.ws:
		p.buf = append(p.buf, "data: "...)
	case p.nitems == 0:
		p.buf = append(p.buf, '[')
	default:
		p.buf = append(p.buf, ',')
	}
	p.nitems++
}

// end finishes an event (data: a feed event, not a lag notice) and writes
// the batch if it is full.
func (p *pump) end(data bool) error {
	if !p.ws {
		p.buf = append(p.buf, '\n', '\n')
	}
	if data {
		p.nev++
	}
	if len(p.buf) >= p.limit {
		return p.send()
	}
	return nil
}

// send writes the batch and counts its events as delivered.
func (p *pump) send() error {
	if p.ws {
		p.buf = append(p.buf, ']')
	}
	err := p.k.write(p.buf)
	if err == nil {
		p.h.delivered.Add(p.nev)
		p.wrote = true
	}
	p.buf, p.nev, p.nitems = p.buf[:0], 0, 0
	return err
}

// writeError answers {"error":msg} with the status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(wire.AppendError(make([]byte, 0, 64+len(msg)), msg), '\n'))
}

// refuse answers a failed subscribe.
func refuse(w http.ResponseWriter, err error) {
	var tm tooManyError
	if errors.As(err, &tm) {
		writeError(w, http.StatusServiceUnavailable, tm.Error())
		return
	}
	writeError(w, http.StatusServiceUnavailable, "feed is shutting down")
}

// badRequest answers a query parameter error.
func badRequest(w http.ResponseWriter, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		writeError(w, http.StatusBadRequest, pe.Msg)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}
