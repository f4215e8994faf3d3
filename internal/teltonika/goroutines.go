package teltonika

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// goroutines is the goroutine-per-connection mode (Options.Goroutines).
type goroutines struct {
	s  *Server
	ln net.Listener
	mu struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		closed bool
	}
	wg sync.WaitGroup
}

func (s *Server) serveGoroutines(ln net.Listener) (stop func() error) {
	g := &goroutines{s: s, ln: ln}
	g.mu.conns = make(map[net.Conn]struct{})
	g.wg.Add(1)
	go g.accept()
	return g.close
}

func (g *goroutines) close() error {
	err := g.ln.Close()
	g.mu.Lock()
	g.mu.closed = true
	for c := range g.mu.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return err
}

func (g *goroutines) accept() {
	defer g.wg.Done()
	var delay time.Duration
	for {
		c, err := g.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.s.errLog.Warn("teltonika: accept failed; retrying", "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !g.track(c) {
			_ = c.Close()
			continue
		}
		g.wg.Add(1)
		go g.serve(c)
	}
}

// track registers c; false if the server is closed or full.
func (g *goroutines) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.closed {
		return false
	}
	if len(g.mu.conns) >= g.s.o.MaxConns {
		g.s.refuse(c.RemoteAddr().String())
		return false
	}
	g.mu.conns[c] = struct{}{}
	g.s.Stats.Connections.Add(1)
	g.s.Stats.ConnectionsTotal.Add(1)
	return true
}

func (g *goroutines) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.mu.conns, c)
	g.mu.Unlock()
	g.s.Stats.Connections.Add(-1)
	_ = c.Close()
}

// serve runs one connection: the handshake, then frames until an error.
func (g *goroutines) serve(c net.Conn) {
	defer g.wg.Done()
	defer g.untrack(c)
	s := g.s
	remote := func() string { return c.RemoteAddr().String() }
	var idBuf [fleet.MaxIDLen]byte
	id, err := g.handshake(c, idBuf[:0])
	if err != nil {
		g.closing(remote, nil, err)
		return
	}
	var hdr [HeaderLen]byte
	for {
		// Idle: wait for the first byte of the next frame with nothing but
		// this 8-byte array.
		if err := readFull(c, hdr[:1], s.o.IdleTimeout); err != nil {
			g.closing(remote, id, err)
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(s.o.FrameTimeout))
		if _, err := io.ReadFull(c, hdr[1:]); err != nil {
			g.closing(remote, id, err)
			return
		}
		n, err := ParseHeader(hdr[:], s.o.MaxDataLen)
		if err != nil {
			s.bad(remote, id, err)
			return
		}
		sc := getScratch()
		ok := g.frame(c, remote, id, sc, hdr[:], HeaderLen+n+CRCLen)
		putScratch(sc)
		if !ok {
			return
		}
	}
}

// frame reads the rest of a frame, commits it and acknowledges it; false
// closes the connection.
func (g *goroutines) frame(c net.Conn, remote func() string, id []byte, sc *scratch, hdr []byte, size int) bool {
	s := g.s
	got := copy(sc.window(0, size), hdr)
	for got < size {
		n, err := io.ReadFull(c, sc.window(got, size))
		got += n
		if err != nil {
			g.closing(remote, id, err)
			return false
		}
	}
	received := time.Now()
	n, err := s.process(id, sc, received)
	if err != nil {
		if errors.Is(err, errBadFrame) {
			s.bad(remote, id, err)
		}
		return false
	}
	var ack [4]byte
	binary.BigEndian.PutUint32(ack[:], uint32(n))
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(ack[:]); err != nil {
		return false
	}
	s.acked(received)
	return true
}

// handshake reads the IMEI (2-byte length, ASCII digits), appends the ID
// to dst and answers 01; a malformed one is answered 00.
func (g *goroutines) handshake(c net.Conn, dst []byte) ([]byte, error) {
	var b [2 + maxIMEILen]byte
	if err := readFull(c, b[:2], g.s.o.HandshakeTimeout); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(b[:2]))
	if err := imeiLen(n); err != nil {
		reject(c)
		return nil, err
	}
	if _, err := io.ReadFull(c, b[2:2+n]); err != nil {
		return nil, err
	}
	imei := b[2 : 2+n]
	if err := checkIMEI(imei); err != nil {
		reject(c)
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write([]byte{1}); err != nil {
		return nil, err
	}
	dst = append(dst, g.s.o.IDPrefix...)
	return append(dst, imei...), nil
}

func reject(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{0})
}

// closing sorts out why a connection ends: a silent device, a bad
// handshake, or an ordinary disconnect (EOF, reset), which is not logged.
func (g *goroutines) closing(remote func() string, id []byte, err error) {
	switch {
	case errors.Is(err, errHandshake):
		g.s.bad(remote, id, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		g.s.Stats.Timeouts.Add(1)
	}
}

func readFull(c net.Conn, b []byte, timeout time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.ReadFull(c, b)
	return err
}
