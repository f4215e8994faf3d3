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
	w.WriteHeader(http.StatusOK)
	k := &sseSink{w: w, rc: rc, stall: h.opt.Stall}
	if k.write(sseHello) != nil || k.flush() != nil {
		return
	}
	newPump(h, s, k, false).run(r.Context())
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
