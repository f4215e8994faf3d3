package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/fleetd/fleetd/internal/engine"
	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/store"
)

// truckID reads and validates the {id} path value; on failure it has
// answered 400.
func (s *Server) truckID(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	id := r.PathValue("id")
	if !store.ValidID([]byte(id)) {
		shown := id
		if len(shown) > store.MaxIDLen {
			shown = shown[:store.MaxIDLen] + "..."
		}
		s.writeError(w, r, http.StatusBadRequest,
			fmt.Sprintf("invalid truck id %q: must be 1-%d bytes of [A-Za-z0-9_.:-]", shown, store.MaxIDLen))
		return nil, false
	}
	return []byte(id), true
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
	var buf [256]byte
	writeJSON(w, http.StatusOK, appendTruck(buf[:0], id, &p, &attrs))
}

// deleteTruck is DELETE /v1/trucks/{id}.
func (s *Server) deleteTruck(w http.ResponseWriter, r *http.Request) {
	id, ok := s.truckID(w, r)
	if !ok {
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
