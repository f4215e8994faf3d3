package frontdoor

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// BenchmarkServe: a small JSON GET answered through the front door and
// through net/http alone, 4 keep-alive clients with one request in
// flight each, client and server in this process (so ns/op is both
// sides' CPU shared over the machine's cores; allocs/op and B/op are
// mostly the server's). Compare the two cases, not the absolute figures.
func BenchmarkServe(b *testing.B) {
	body := []byte(`{"results":[{"id":"truck-0000042","lat":40.7128,"lon":-74.006,"distance_m":12.345,"ts":1764000000,"speed":52.5,"heading":90}]}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	for _, front := range []bool{true, false} {
		name := "net-http"
		if front {
			name = "frontdoor"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			hs := &http.Server{Handler: h}
			if front {
				s := New(hs, func(string) bool { return true }, slog.New(slog.DiscardHandler))
				go func() { _ = s.Serve(ln) }()
				defer s.Close()
			} else {
				go func() { _ = hs.Serve(ln) }()
				defer hs.Close()
			}
			const clients = 4
			req := "GET /v1/nearby?lat=40.7&lon=-74&k=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n"
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			b.ReportAllocs()
			b.ResetTimer()
			for c := range clients {
				n := b.N / clients
				if c < b.N%clients {
					n++
				}
				wg.Go(func() {
					nc, err := net.Dial("tcp", ln.Addr().String())
					if err != nil {
						errs <- err
						return
					}
					defer nc.Close()
					br := bufio.NewReader(nc)
					for range n {
						if _, err := io.WriteString(nc, req); err != nil {
							errs <- err
							return
						}
						res, err := http.ReadResponse(br, nil)
						if err != nil {
							errs <- err
							return
						}
						if k, _ := io.Copy(io.Discard, res.Body); k != int64(len(body)) {
							errs <- fmt.Errorf("%d bytes", k)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			if err := <-errs; err != nil && !strings.Contains(err.Error(), "closed") {
				b.Fatal(err)
			}
		})
	}
}
