package sink

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// The handlers of /v1/sinks (mounted by package server behind the API's
// authentication: GET needs read, PUT and DELETE admin).

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: sink: marshalling an answer: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// ServeList is GET /v1/sinks: {"sinks": [...]}.
func (d *Dispatcher) ServeList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"sinks": d.List()})
}

// ServeGet is GET /v1/sinks/{name}: the sink, its counters and its
// dead letters.
func (d *Dispatcher) ServeGet(w http.ResponseWriter, r *http.Request) {
	v, ok := d.Get(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, "no sink named "+quote(r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ServePut is PUT /v1/sinks/{name}: 201 created, 200 replaced.
func (d *Dispatcher) ServePut(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := CheckName(name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxConfigBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "sink: reading the body: "+err.Error())
		return
	}
	c, err := ParseConfig(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	created, err := d.Put(name, c)
	switch {
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, ErrPersist):
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	case err != nil: // configured, but its outbox could not be opened
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	v, _ := d.Get(name)
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, v)
}

// ServeDelete is DELETE /v1/sinks/{name}.
func (d *Dispatcher) ServeDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	switch err := d.Delete(name); {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no sink named "+quote(name))
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
