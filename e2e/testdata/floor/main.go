// Command floor is the bare net/http server the RESP benchmarks measure
// fleetd against: one handler writing a fixed small JSON body, nothing
// else, so its CPU per request is what Go's net/http itself costs. It
// prints "listening <addr>" on stderr and serves until killed.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "listening", ln.Addr())
	body := []byte(`{"status":"ok"}`)
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(body)
	}))
}
