package server

import (
	"context"
	"path/filepath"

	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/store"
)

// openCluster joins the cluster o describes with eng: its positions file
// lives in <data>/cluster (none without a data directory).
func openCluster(o cluster.Options, eng *engine.Engine, dataDir string) (*cluster.Node, error) {
	o.Engine = eng
	if dataDir != "" {
		o.Dir = filepath.Join(dataDir, "cluster")
	}
	return cluster.Open(o)
}

// closeNode closes a cluster node, if any.
func closeNode(n *cluster.Node) error {
	if n == nil {
		return nil
	}
	return n.Close()
}

// clusterAPI adapts a cluster node (and its sink events) to api.Cluster.
type clusterAPI struct {
	n  *cluster.Node
	ev *cluster.Events
}

func (c clusterAPI) Publish(ctx context.Context, batch []store.Update) (string, error) {
	t, err := c.n.Publish(ctx, batch)
	return t.String(), err
}

func (c clusterAPI) Delete(ctx context.Context, id []byte) (string, error) {
	t, err := c.n.Delete(ctx, id)
	return t.String(), err
}

func (c clusterAPI) CheckToken(token string) error                 { return c.n.CheckToken(token) }
func (c clusterAPI) Await(ctx context.Context, token string) error { return c.n.Await(ctx, token) }

// clusterStats is /v1/stats' "cluster": the node's, and its sink events'.
type clusterStats struct {
	cluster.Stats
	Events cluster.EventsStats `json:"sink_events"`
}

func (c clusterAPI) Stats() any { return clusterStats{c.n.Stats(), c.ev.Stats()} }
