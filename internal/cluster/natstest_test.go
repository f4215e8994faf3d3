package cluster

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// freePorts returns n distinct free loopback ports (they may be taken by
// someone else before use: a small race that tests accept).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ps []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ps = append(ps, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ps
}

// natsCluster runs n NATS servers with JetStream in this process, routed
// into one cluster on loopback, and returns their client URLs.
func natsCluster(t testing.TB, n int) ([]string, []*natsserver.Server) {
	t.Helper()
	ports := freePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	var urls []string
	var srvs []*natsserver.Server
	for i := range n {
		o := &natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       ports[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      os.Getenv("NATS_LOG") == "",
		}
		if n > 1 {
			o.Cluster = natsserver.ClusterOpts{Name: "fleetd-test", Host: "127.0.0.1", Port: ports[n+i]}
			o.Routes = natsserver.RoutesFromStr(strings.Join(routes, ","))
		}
		s, err := natsserver.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		if !o.NoLog {
			s.ConfigureLogger()
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("NATS server %d not ready", i)
		}
		srvs = append(srvs, s)
		urls = append(urls, s.ClientURL())
	}
	t.Cleanup(func() {
		for _, s := range srvs {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	return urls, srvs
}
