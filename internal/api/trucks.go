package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"unsafe"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/store"
)

// truckID reads and validates the {id} path value; on failure it has
// answered 400. The bytes alias the request's path (see getTruck).
func (s *Server) truckID(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	id := r.PathValue("id")
	// SAFETY: the view is only read: by ValidID, by the store's lookup
	// (which copies what it returns) and by the error messages, during
	// the request; nothing writes through it, and callers that hand it on
	// to something that may keep it (Delete) copy it first.
	b := unsafe.Slice(unsafe.StringData(id), len(id))
	if !store.ValidID(b) {
		shown := id
		if len(shown) > store.MaxIDLen {
			shown = shown[:store.MaxIDLen] + "..."
		}
		s.writeError(w, r, http.StatusBadRequest,
			fmt.Sprintf("invalid truck id %q: must be 1-%d bytes of [A-Za-z0-9_.:-]", shown, store.MaxIDLen))
		return nil, false
	}
	return b, true
}

func (s *Server) notFoundTruck(w http.ResponseWriter, r *http.Request, id []byte) {
	s.writeError(w, r, http.StatusNotFound, fmt.Sprintf("truck %q not found", id))
}

// getTruck is GET /v1/trucks/{id}.
func (s *Server) getTruck(w http.ResponseWriter, r *http.Request) {
	id, ok := s.truckID(w, r)
	if !ok {
		return
	}
	var attrs fleet.Attrs
	p, ok := s.st.GetAttrs(id, &attrs)
	if !ok {
		s.notFoundTruck(w, r, id)
		return
	}
	bp := s.getBuf()
	*bp = appendTruck((*bp)[:0], id, &p, &attrs)
	writeJSON(w, http.StatusOK, *bp) // a [256]byte on the stack escaped through Write: one allocation a request
	s.putBuf(bp)
}

// deleteTruck is DELETE /v1/trucks/{id}.
func (s *Server) deleteTruck(w http.ResponseWriter, r *http.Request) {
	id, ok := s.truckID(w, r)
	if !ok {
		return
	}
	id = bytes.Clone(id) // the engine's log and observers see it: not a view of the request
	if s.cluster != nil {
		s.deleteCluster(w, r, id)
		return
	}
	found, err := s.eng.Delete(id)
	switch {
	case errors.Is(err, engine.ErrClosed):
		s.writeError(w, r, http.StatusServiceUnavailable, "the server is shutting down; the truck was not deleted")
	case err != nil:
		s.writeError(w, r, http.StatusServiceUnavailable, "could not delete the truck durably: "+err.Error())
	case !found:
		s.notFoundTruck(w, r, id)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
