package teltonika

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fleetd/fleetd/internal/fleet"
)

// havePoller: on Linux an epoll loop holds the idle connections.
const havePoller = true

// poller is the Linux mode (doc.go, "Memory per connection"): the
// connections' sockets are outside Go's netpoller, in an epoll set of
// our own with EPOLLONESHOT, so that an idle connection is a pconn and a
// map entry, no goroutine. When one is readable, a goroutine takes it
// (state armed → busy), reads what it can without blocking, acts on
// complete handshakes and frames, and re-arms it. A sweeper closes the
// armed connections whose deadline passed.
type poller struct {
	s          *Server
	ep, ln     int
	wakeR, wkW int // a pipe that ends the loop
	mu         struct {
		sync.Mutex
		conns  map[int32]*pconn
		closed bool
	}
	loopDone chan struct{}
	wg       sync.WaitGroup // handlers and the sweeper
	quit     chan struct{}
}

// pconn states.
const (
	armed  = 0 // in the epoll set, waiting; the sweeper may close it
	busy   = 1 // a handler owns it
	closed = 2
)

// Phases of a connection's input.
const (
	phIMEILen = iota // 2-byte length of the IMEI
	phIMEI           // the digits
	phHeader         // the next frame's 8-byte header
	phBody           // the rest of the frame, into scratch
)

// pconn is one connection: 128 bytes (with the 64-byte ID) while idle.
type pconn struct {
	fd       int32
	state    atomic.Int32
	phase    uint8
	idLen    uint8
	got      uint16       // bytes of the current small field read
	need     uint16       // IMEI length
	deadline atomic.Int64 // Unix nanoseconds
	hdr      [HeaderLen]byte
	id       [fleet.MaxIDLen]byte
	sc       *scratch // the frame in progress, nil between frames
	bodyGot  int32
	size     int32 // of the frame in progress
}

func (s *Server) servePoller(ln net.Listener) (func() error, error) {
	lfd, err := dupListener(ln)
	_ = ln.Close() // the socket stays open on our descriptor
	if err != nil {
		return nil, err
	}
	p := &poller{s: s, ln: lfd, loopDone: make(chan struct{}), quit: make(chan struct{})}
	p.mu.conns = make(map[int32]*pconn)
	fail := func(err error) (func() error, error) {
		syscall.Close(lfd)
		if p.ep > 0 {
			syscall.Close(p.ep)
		}
		return nil, err
	}
	if p.ep, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return fail(err)
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return fail(err)
	}
	p.wakeR, p.wkW = pipe[0], pipe[1]
	for _, fd := range []int{lfd, p.wakeR} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fail(err)
		}
	}
	go p.loop()
	p.wg.Add(1)
	go p.sweep()
	return p.close, nil
}

// dupListener returns a non-blocking duplicate of ln's descriptor.
func dupListener(ln net.Listener) (int, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return -1, errors.New("not a TCP listener")
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = syscall.Dup(int(fd)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	syscall.CloseOnExec(nfd)
	if err := syscall.SetNonblock(nfd, true); err != nil {
		syscall.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

func (p *poller) close() error {
	p.mu.Lock()
	p.mu.closed = true
	p.mu.Unlock()
	close(p.quit)
	_, _ = syscall.Write(p.wkW, []byte{1})
	<-p.loopDone
	err := syscall.Close(p.ln)
	p.mu.Lock()
	conns := make([]*pconn, 0, len(p.mu.conns))
	for _, c := range p.mu.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		if c.state.CompareAndSwap(armed, closed) {
			p.closeConn(c)
		} // a busy one is closed by its handler, which sees mu.closed
	}
	p.wg.Wait()
	syscall.Close(p.ep)
	syscall.Close(p.wakeR)
	syscall.Close(p.wkW)
	return err
}

func (p *poller) loop() {
	defer close(p.loopDone)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.ep, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			p.s.errLog.Warn("teltonika: epoll_wait failed; the gateway stops", "error", err)
			return
		}
		for _, ev := range events[:n] {
			switch int(ev.Fd) {
			case p.wakeR:
				return
			case p.ln:
				p.accept()
			default:
				p.mu.Lock()
				c := p.mu.conns[ev.Fd]
				p.mu.Unlock()
				if c != nil && c.state.CompareAndSwap(armed, busy) {
					p.wg.Add(1)
					go p.handle(c)
				}
			}
		}
	}
}

// accept takes every pending connection.
func (p *poller) accept() {
	for {
		fd, _, err := syscall.Accept4(p.ln, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		switch {
		case err == syscall.EAGAIN:
			return
		case err == syscall.EINTR, err == syscall.ECONNABORTED:
			continue
		case err != nil:
			// Out of descriptors and the like: the listener stays readable,
			// so pause a little rather than spin.
			p.s.errLog.Warn("teltonika: accept failed; retrying", "error", err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		c := &pconn{fd: int32(fd)}
		c.deadline.Store(time.Now().Add(p.s.o.HandshakeTimeout).UnixNano())
		p.mu.Lock()
		full := len(p.mu.conns) >= p.s.o.MaxConns
		if !full && !p.mu.closed {
			p.mu.conns[c.fd] = c
		}
		p.mu.Unlock()
		if full || p.isClosed() {
			if full {
				p.s.refuse(peer(fd))
			}
			syscall.Close(fd)
			continue
		}
		p.s.Stats.Connections.Add(1)
		p.s.Stats.ConnectionsTotal.Add(1)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: c.fd}
		if err := syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			c.state.Store(closed)
			p.closeConn(c)
		}
	}
}

func (p *poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.closed
}

// closeConn removes and closes c; only its owner (a handler, or whoever
// moved it from armed to closed) calls it.
func (p *poller) closeConn(c *pconn) {
	p.mu.Lock()
	delete(p.mu.conns, c.fd)
	p.mu.Unlock()
	_ = syscall.Close(int(c.fd))
	if c.sc != nil {
		putScratch(c.sc)
		c.sc = nil
	}
	p.s.Stats.Connections.Add(-1)
}

// sweep closes armed connections past their deadline.
func (p *poller) sweep() {
	defer p.wg.Done()
	o := p.s.o
	every := min(o.HandshakeTimeout, o.IdleTimeout, o.FrameTimeout) / 4
	every = min(max(every, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	var late []*pconn
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		late = late[:0]
		p.mu.Lock()
		for _, c := range p.mu.conns {
			if c.deadline.Load() < now && c.state.Load() == armed {
				late = append(late, c)
			}
		}
		p.mu.Unlock()
		for _, c := range late {
			if c.state.CompareAndSwap(armed, closed) {
				p.s.Stats.Timeouts.Add(1)
				p.closeConn(c)
			}
		}
		clear(late)
	}
}

// handle reads what c has, acts on it and re-arms c, or closes it.
func (p *poller) handle(c *pconn) {
	defer p.wg.Done()
	if !p.input(c) || p.isClosed() {
		c.state.Store(closed)
		p.closeConn(c)
		return
	}
	c.state.Store(armed)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: c.fd}
	_ = syscall.EpollCtl(p.ep, syscall.EPOLL_CTL_MOD, int(c.fd), &ev) // fails only if the sweeper closed it meanwhile
}

// read reads into b without blocking: n > 0 bytes, or 0 and more=true
// when nothing is there yet; ok is false when the connection is over.
func read(fd int32, b []byte) (n int, ok bool) {
	for {
		n, err := syscall.Read(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, true
		case err != nil || n == 0: // reset, or EOF
			return 0, false
		}
		return n, true
	}
}

// input consumes what can be read; false closes the connection.
func (p *poller) input(c *pconn) bool {
	s := p.s
	remote := func() string { return peer(int(c.fd)) }
	prefix := len(s.o.IDPrefix)
	for {
		var buf []byte
		switch c.phase {
		case phIMEILen:
			buf = c.hdr[c.got:2]
		case phIMEI:
			buf = c.id[prefix+int(c.got) : prefix+int(c.need)]
		case phHeader:
			buf = c.hdr[c.got:HeaderLen]
		case phBody:
			buf = c.sc.window(int(c.bodyGot), int(c.size))
		}
		n, ok := read(c.fd, buf)
		if !ok {
			return false
		}
		if n == 0 {
			return true // wait for more
		}
		switch c.phase {
		case phIMEILen:
			if c.got += uint16(n); c.got < 2 {
				continue
			}
			l := int(binary.BigEndian.Uint16(c.hdr[:2]))
			if err := imeiLen(l); err != nil {
				write(c.fd, []byte{0})
				s.bad(remote, nil, err)
				return false
			}
			c.phase, c.got, c.need = phIMEI, 0, uint16(l)
		case phIMEI:
			if c.got += uint16(n); c.got < c.need {
				continue
			}
			if err := checkIMEI(c.id[prefix : prefix+int(c.need)]); err != nil {
				write(c.fd, []byte{0})
				s.bad(remote, nil, err)
				return false
			}
			copy(c.id[:], s.o.IDPrefix)
			c.idLen = uint8(prefix + int(c.need))
			if !write(c.fd, []byte{1}) {
				return false
			}
			c.phase, c.got = phHeader, 0
			c.deadline.Store(time.Now().Add(s.o.IdleTimeout).UnixNano())
		case phHeader:
			if c.got == 0 {
				c.deadline.Store(time.Now().Add(s.o.FrameTimeout).UnixNano())
			}
			if c.got += uint16(n); c.got < HeaderLen {
				continue
			}
			l, err := ParseHeader(c.hdr[:], s.o.MaxDataLen)
			if err != nil {
				s.bad(remote, c.id[:c.idLen], err)
				return false
			}
			c.size = int32(HeaderLen + l + CRCLen)
			c.sc = getScratch()
			copy(c.sc.window(0, int(c.size)), c.hdr[:])
			c.phase, c.bodyGot = phBody, HeaderLen
		case phBody:
			if c.bodyGot += int32(n); c.bodyGot < c.size {
				continue
			}
			received := time.Now()
			id := c.id[:c.idLen]
			cnt, err := s.process(id, c.sc, received)
			putScratch(c.sc)
			c.sc = nil
			if err != nil {
				if errors.Is(err, errBadFrame) {
					s.bad(remote, id, err)
				}
				return false
			}
			var ack [4]byte
			binary.BigEndian.PutUint32(ack[:], uint32(cnt))
			if !write(c.fd, ack[:]) {
				return false
			}
			s.acked(received)
			c.phase, c.got = phHeader, 0
			c.deadline.Store(time.Now().Add(s.o.IdleTimeout).UnixNano())
		}
	}
}

// write sends b whole or reports false: an answer of 1 or 4 bytes always
// fits an empty socket buffer, and a device that does not read its
// answers is not waited for.
func write(fd int32, b []byte) bool {
	for {
		n, err := syscall.Write(int(fd), b)
		if err == syscall.EINTR {
			continue
		}
		return err == nil && n == len(b)
	}
}

// peer formats a socket's remote address for a log line.
func peer(fd int) string {
	sa, err := syscall.Getpeername(fd)
	if err != nil {
		return ""
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	case *syscall.SockaddrInet6:
		return (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	}
	return ""
}
