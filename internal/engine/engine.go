package engine

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/store"
)

// Options configures an Engine.
type Options struct {
	Store store.Options
}

// Engine owns the store and everything that must see each applied update.
type Engine struct {
	st      *store.Store
	ready   atomic.Bool
	closed  atomic.Bool
	updates atomic.Int64 // accepted updates, stale included
	rate    rateMeter
	started time.Time
}

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("engine: closed")

// Open builds an engine. It is ready once Open returns.
func Open(o Options) (*Engine, error) {
	st, err := store.New(o.Store)
	if err != nil {
		return nil, err
	}
	e := &Engine{st: st, started: time.Now()}
	e.ready.Store(true)
	return e, nil
}

// Store gives read access for queries. Writers go through the Engine.
func (e *Engine) Store() *store.Store { return e.st }

// Ready reports whether recovery has finished and the engine serves.
func (e *Engine) Ready() bool { return e.ready.Load() && !e.closed.Load() }

// Apply applies a batch of valid updates. When it returns nil, every update
// of the batch is applied (or was stale) and durable per the fsync policy.
func (e *Engine) Apply(batch []store.Update) (store.Result, error) {
	if e.closed.Load() {
		return store.Result{}, ErrClosed
	}
	res := e.st.Apply(batch)
	n := int64(res.Inserted + res.Updated + res.Stale)
	e.updates.Add(n)
	e.rate.add(time.Now().Unix(), n)
	return res, nil
}

// Delete removes a truck; it reports whether the truck existed.
func (e *Engine) Delete(id []byte) (bool, error) {
	if e.closed.Load() {
		return false, ErrClosed
	}
	return e.st.Delete(id), nil
}

// Stats is the engine's own accounting, without the process-wide runtime
// figures (the API adds those).
type Stats struct {
	Store         store.Stats
	UpdatesTotal  int64
	UpdatesPerSec float64
	Uptime        time.Duration
}

// Stats reports the engine's figures.
func (e *Engine) Stats() Stats {
	return Stats{
		Store:         e.st.Stats(),
		UpdatesTotal:  e.updates.Load(),
		UpdatesPerSec: e.rate.perSec(time.Now().Unix()),
		Uptime:        time.Since(e.started),
	}
}

// Close stops accepting updates and flushes what must be flushed.
func (e *Engine) Close() error {
	e.closed.Store(true)
	return nil
}
