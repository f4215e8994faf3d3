package feed

import (
	"net/http"
	"time"
)

var (
	sseHello = []byte(": fleetd feed\n\n")
	ssePing  = []byte(": ping\n\n")
)

// ServeSSE streams events as Server-Sent Events: one "data: {json}\n\n"
// per event, batched into writes and flushed at most every FlushInterval,
// with ": ping" comments when idle. Query parameters: bbox, ids, types,
// max_hz (see the package documentation); errors answer 400, a full hub
// 503, both with {"error":"…"}. The subscription is registered before the
// 200 header is sent, so a client that has the header gets every event
// published after.
func (h *Hub) ServeSSE(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.RawQuery)
	if err != nil {
		badRequest(w, err)
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Now().Add(h.opt.Stall)); err != nil {
		// Without deadlines a vanished client could hold the goroutine
		// forever; refuse rather than break the bound.
		writeError(w, http.StatusInternalServerError, "event stream unavailable: the server cannot set write deadlines")
		return
	}
	s, err := h.subscribe(&f)
	if err != nil {
		refuse(w, err)
		return
	}
	defer h.unsubscribe(s)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	// Not chunked: the body ends when the connection closes (net/http's
	// setup for SSE over HTTP/1.1; HTTP/2 ignores it). Chunked, net/http
	// writes each batch in three syscalls (the chunk header with the first
	// 4 KiB, the rest, and the trailing CRLF at the flush); unchunked, in
	// one, which halves the kernel's cost of a write and the client's
	// wake-ups at 1,000 subscribers.
	hd.Set("Transfer-Encoding", "identity")
	w.WriteHeader(http.StatusOK)
	k := &sseSink{w: w, rc: rc, stall: h.opt.Stall}
	if k.write(sseHello) != nil || k.flush() != nil {
		return
	}
	p := newPump(h, s, k, false)
	p.run(r.Context())
	p.release()
	// Bound what net/http still writes after we return (the chunked
	// terminator) for a client that stopped reading.
	_ = rc.SetWriteDeadline(time.Now().Add(min(h.opt.Stall, time.Second)))
}

// sseSink writes to an SSE response, each write under a Stall deadline.
type sseSink struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (k *sseSink) write(p []byte) error {
	if err := k.rc.SetWriteDeadline(time.Now().Add(k.stall)); err != nil {
		return err
	}
	_, err := k.w.Write(p)
	return err
}

func (k *sseSink) flush() error {
	if err := k.rc.SetWriteDeadline(time.Now().Add(k.stall)); err != nil {
		return err
	}
	return k.rc.Flush()
}

func (k *sseSink) ping() error {
	if err := k.write(ssePing); err != nil {
		return err
	}
	return k.flush()
}
