package server

import (
	"context"

	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/sink"
)

// openEvents opens the cluster's sink events for a node described by o
// (before the sinks start: they publish into it from the first event).
func openEvents(o *cluster.Options) (*cluster.Events, error) {
	return cluster.OpenEvents(cluster.EventsOptions{URLs: o.URLs, Stream: o.Stream, Replicas: o.Replicas,
		Name: o.Name, Logger: o.Logger})
}

// sinkRelay adapts the cluster's sink events to sink.Relay.
type sinkRelay struct{ ev *cluster.Events }

func (r sinkRelay) Publish(ctx context.Context, name string, lane int, evs []sink.RelayEvent) (int, error) {
	ce := make([]cluster.Event, len(evs))
	for i, e := range evs {
		ce[i] = cluster.Event{ID: e.ID, Key: e.Key, Time: e.Time, Local: e.Local, Payload: e.Payload}
	}
	return r.ev.Publish(ctx, name, lane, ce)
}

func (r sinkRelay) Follow(name string, lanes int) (sink.Follower, error) {
	f, err := r.ev.Follow(name, lanes)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (r sinkRelay) Remove(name string) error { return r.ev.Remove(name) }

// closeEvents closes the cluster's sink events, if any (after the sinks).
func closeEvents(ev *cluster.Events) error {
	if ev == nil {
		return nil
	}
	return ev.Close()
}
