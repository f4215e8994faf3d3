//go:build !linux

package teltonika

import (
	"errors"
	"net"
)

// havePoller: the poller is Linux's (epoll); elsewhere every connection
// has its goroutine.
const havePoller = false

func (s *Server) servePoller(net.Listener) (func() error, error) {
	return nil, errors.New("teltonika: the poller needs Linux")
}
