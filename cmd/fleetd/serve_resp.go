package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/fleetd/fleetd/internal/auth"
	"github.com/fleetd/fleetd/internal/resp"
	"github.com/fleetd/fleetd/internal/server"
)

// serveRESP starts the RESP server when --resp is set (nil otherwise),
// over the opened server's engine, with the same tokens and stats as
// HTTP; done is closed when its Serve returns.
func serveRESP(c *serveConfig, fleet *server.Server, keys *auth.Keyring, log *slog.Logger) (*resp.Server, chan struct{}, error) {
	if c.respAddr == "" {
		return nil, nil, nil
	}
	rs, err := resp.New(resp.Options{
		Engine:       fleet.Engine,
		Collection:   c.respKey,
		Keyring:      keys,
		Stats:        fleet.API.StatsJSON,
		MaxClockSkew: skewOption(c.maxSkew),
		Logger:       log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("--resp: %w", err)
	}
	ln, err := net.Listen("tcp", c.respAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("--resp: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rs.Serve(ln); !errors.Is(err, resp.ErrServerClosed) {
			log.Error("resp server stopped", "error", err)
		}
	}()
	log.Info("resp listening", "addr", ln.Addr().String(), "collection", c.respKey)
	return rs, done, nil
}
