package feed

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ServeWS streams events over a WebSocket (github.com/coder/websocket):
// each text message is a JSON array of one or more events, in order (one
// batch, at most about 64 KiB). Query parameters and error answers are
// those of ServeSSE; they are checked before the upgrade. The server reads
// only to notice the close (a data message from the client closes the
// connection with 1008) and pings when idle; on Hub.Close clients get a
// 1001 going-away close.
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.RawQuery)
	if err != nil {
		badRequest(w, err)
		return
	}
	s, err := h.subscribe(&f)
	if err != nil {
		refuse(w, err)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.opt.OriginPatterns})
	if err != nil {
		h.unsubscribe(s)
		return // Accept has answered the request
	}
	c.SetReadLimit(4096)
	// The read loop only notices the close, or a data message (refused with
	// 1008). It is ours, not the library's CloseRead, whose context ends
	// only after its own close handshake (up to 15 s with a client that does
	// not answer it): the pump must stop, and the slot be freed, at once.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	readDone := make(chan struct{})
	var dataMsg atomic.Bool
	go func() {
		defer close(readDone)
		defer cancel()
		if _, _, err := c.Reader(ctx); err == nil {
			dataMsg.Store(true)
		}
	}()
	k := &wsSink{c: c, ctx: ctx, stall: h.opt.Stall}
	p := newPump(h, s, k, true)
	end := p.run(ctx)
	p.release()
	// The slot is freed before the close, which can wait for the client.
	h.unsubscribe(s)
	switch {
	case end == endClosed:
		_ = c.Close(websocket.StatusGoingAway, "server shutting down")
	case dataMsg.Load():
		_ = c.Close(websocket.StatusPolicyViolation, "unexpected data message")
	default:
		// Gone or stalled: no handshake with a client that is not reading.
		_ = c.CloseNow()
	}
	<-readDone
}

// wsSink writes WebSocket messages, each under a Stall timeout (on timeout
// the library closes the connection).
type wsSink struct {
	c     *websocket.Conn
	ctx   context.Context
	stall time.Duration
}

func (k *wsSink) write(p []byte) error {
	ctx, cancel := context.WithTimeout(k.ctx, k.stall)
	defer cancel()
	return k.c.Write(ctx, websocket.MessageText, p)
}

func (k *wsSink) flush() error { return nil }

func (k *wsSink) ping() error {
	ctx, cancel := context.WithTimeout(k.ctx, k.stall)
	defer cancel()
	return k.c.Ping(ctx)
}
