package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/fleetd/fleetd/internal/ingest"
	"github.com/fleetd/fleetd/internal/store"
	"github.com/fleetd/fleetd/internal/wire"
)

// Cluster is what the API needs of a cluster node (package cluster's
// Node): in cluster mode writes are published to the cluster's log and
// applied by every node from it, and a read may wait for a write's token.
type Cluster interface {
	// Publish returns once the cluster's log has durably accepted the
	// batch, with the token of the positions it reached.
	Publish(ctx context.Context, batch []store.Update) (token string, err error)
	// Delete publishes the deletion of a truck.
	Delete(ctx context.Context, id []byte) (token string, err error)
	// CheckToken reports whether a token's text form is well formed.
	CheckToken(token string) error
	// Await returns nil once this node has applied the token's writes,
	// an error after its bound.
	Await(ctx context.Context, token string) error
	// Stats is the node's part of /v1/stats ("cluster").
	Stats() any
}

// TokenHeader carries a write's token in its answer, and the token a read
// waits for in its request (or the query parameter TokenParam).
const (
	TokenHeader = "Fleetd-Token"
	TokenParam  = "after"
)

// awaitToken makes a read wait until this node has applied the token the
// request carries; false means it answered (400 for a malformed token,
// 503 past the bound).
func (s *Server) awaitToken(w http.ResponseWriter, r *http.Request) bool {
	tok := r.Header.Get(TokenHeader)
	if tok == "" {
		tok = r.URL.Query().Get(TokenParam)
	}
	if tok == "" {
		return true
	}
	if err := s.cluster.CheckToken(tok); err != nil {
		s.writeError(w, r, http.StatusBadRequest, err.Error())
		return false
	}
	if err := s.cluster.Await(r.Context(), tok); err != nil {
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, http.StatusServiceUnavailable, err.Error()+"; retry, or read on another node")
		return false
	}
	return true
}

// positionsCluster answers POST /v1/positions in cluster mode: the
// decoded updates are published, and 200 means the cluster's log holds
// them (every node applies them from it). The answer has the single
// node's fields but "stale" (only the nodes applying an update know it;
// /v1/stats counts it), plus "token".
func (s *Server) positionsCluster(w http.ResponseWriter, r *http.Request, sc *ingestScratch, rep *ingest.Report) {
	ups := sc.batch.Updates
	tok := ""
	if len(ups) > 0 {
		t, err := s.cluster.Publish(r.Context(), ups)
		if err != nil {
			s.writeError(w, r, http.StatusServiceUnavailable, err.Error()+"; retry (a retry of the same body is deduplicated)")
			return
		}
		tok = t
	}
	s.m.accepted.Add(float64(rep.Accepted))
	s.m.rejected.Add(float64(rep.Rejected))
	if rep.Future > 0 {
		s.m.future.Add(float64(rep.Future))
		s.ts.future.Add(int64(rep.Future))
		s.noteFuture(r, rep)
	}
	if rep.Millis > 0 {
		s.m.millis.Add(float64(rep.Millis))
		s.ts.millis.Add(int64(rep.Millis))
	}
	out := append(sc.out[:0], `{"accepted":`...)
	out = strconv.AppendInt(out, int64(rep.Accepted), 10)
	out = append(out, `,"token":`...)
	out = wire.AppendString(out, tok)
	out = append(out, ',')
	// appendReportBody's fields from "rejected" on, without "stale".
	out = appendReportTail(out, rep)
	out = append(out, '}')
	sc.out = out
	if tok != "" {
		w.Header().Set(TokenHeader, tok)
	}
	writeJSON(w, http.StatusOK, out)
}

// appendReportTail is appendReportBody from "rejected" on, without
// "stale".
func appendReportTail(dst []byte, rep *ingest.Report) []byte {
	dst = append(dst, `"rejected":`...)
	dst = strconv.AppendInt(dst, int64(rep.Rejected), 10)
	return appendReportErrors(dst, rep)
}

// deleteCluster is DELETE /v1/trucks/{id} in cluster mode: the delete is
// published and applied by every node; 404 if this node does not hold
// the truck (send the write's token to read after it).
func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request, id []byte) {
	if _, ok := s.st.Get(id); !ok {
		s.notFoundTruck(w, r, id)
		return
	}
	t, err := s.cluster.Delete(r.Context(), id)
	if err != nil {
		s.writeError(w, r, http.StatusServiceUnavailable, "could not delete the truck: "+err.Error()+"; retry")
		return
	}
	w.Header().Set(TokenHeader, t)
	w.WriteHeader(http.StatusNoContent)
}
