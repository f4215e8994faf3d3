package gateway

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/store"
)

// Engine is what a gateway needs of the engine: engine.Engine.Apply,
// which returns only once the batch is durable.
type Engine interface {
	Apply(batch []fleet.Update) (store.Result, error)
}

// ErrClosed is returned by Commit after Close.
var ErrClosed = errors.New("gateway: closed")

// ErrRefused is returned by Commit when the engine refused new trucks of
// the batch (the fleet is at its memory limit): nothing is acknowledged,
// and the device sends the frame again later.
var ErrRefused = errors.New("gateway: fleet at its truck limit, new trucks refused")

// DefaultMaxBatch is how many points a committer worker merges into one
// Apply at most.
const DefaultMaxBatch = 8192

// Job is one frame's points on their way to the engine. A connection
// keeps one Job for its life (it holds the channel its answer comes on).
type Job struct {
	Updates []fleet.Update
	done    chan error
}

// NewJob makes a Job.
func NewJob() *Job { return &Job{done: make(chan error, 1)} }

// Committer merges the Commit calls of many goroutines into few engine
// batches (package doc).
type Committer struct {
	eng      Engine
	maxBatch int
	jobs     chan *Job // unbuffered: a sent job is always answered
	quit     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

// NewCommitter starts workers (0: 2 per CPU, at least 4) that merge up to
// maxBatch points (0: DefaultMaxBatch) per Apply.
func NewCommitter(eng Engine, workers, maxBatch int) *Committer {
	if workers <= 0 {
		workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	c := &Committer{eng: eng, maxBatch: maxBatch, jobs: make(chan *Job), quit: make(chan struct{})}
	c.wg.Add(workers)
	for range workers {
		go c.work()
	}
	return c
}

// Commit applies j.Updates and returns once they are durable (nil), or
// why they are not. An empty j returns nil at once.
func (c *Committer) Commit(j *Job) error {
	if len(j.Updates) == 0 {
		return nil
	}
	select {
	case c.jobs <- j:
	case <-c.quit:
		return ErrClosed
	}
	return <-j.done
}

// Close stops the workers; Commit calls after it return ErrClosed. Jobs a
// worker already took are answered first.
func (c *Committer) Close() {
	c.once.Do(func() { close(c.quit) })
	c.wg.Wait()
}

func (c *Committer) work() {
	defer c.wg.Done()
	var batch []fleet.Update
	var pend []*Job
	for {
		var j *Job
		select {
		case j = <-c.jobs:
		case <-c.quit:
			return
		}
		pend = append(pend[:0], j)
		n := len(j.Updates)
	merge:
		for n < c.maxBatch {
			select {
			case j2 := <-c.jobs:
				pend = append(pend, j2)
				n += len(j2.Updates)
			default:
				break merge
			}
		}
		ups := j.Updates
		if len(pend) > 1 {
			batch = batch[:0]
			for _, p := range pend {
				batch = append(batch, p.Updates...)
			}
			ups = batch
		}
		res, err := c.eng.Apply(ups)
		switch {
		case err != nil:
			err = fmt.Errorf("gateway: applying %d points: %w", len(ups), err)
		case res.Refused > 0:
			err = ErrRefused
		case res.Invalid > 0:
			panic(fmt.Sprintf("BUG: gateway: the store rejected %d checked points as invalid", res.Invalid))
		}
		for _, p := range pend {
			p.done <- err
		}
		clear(pend) // do not pin the jobs
		if cap(batch) > 4*c.maxBatch {
			batch = nil
		}
		clear(batch) // nor their IDs
	}
}
