// Command natsd is a NATS server with JetStream for the cluster end-to-end
// tests (e2e/cluster_test.go): the nats-server module's own server, built
// from this module so that the tests need nothing installed, started as a
// process so that they can kill -9 it. It prints "listening <url>" on
// stderr once it accepts clients and serves until killed.
//
//	natsd -name n0 -port 4222 -cluster-port 6222 -routes nats-route://127.0.0.1:6223,… -store DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

func main() {
	name := flag.String("name", "n0", "server name")
	port := flag.Int("port", 4222, "client port on 127.0.0.1")
	cport := flag.Int("cluster-port", 0, "cluster port on 127.0.0.1 (0: no cluster)")
	routes := flag.String("routes", "", "comma-separated route URLs")
	store := flag.String("store", "", "JetStream store directory")
	verbose := flag.Bool("v", false, "log")
	flag.Parse()
	o := &natsserver.Options{ServerName: *name, Host: "127.0.0.1", Port: *port, JetStream: true, StoreDir: *store, NoLog: !*verbose, NoSigs: true}
	if *cport != 0 {
		o.Cluster = natsserver.ClusterOpts{Name: "fleetd-e2e", Host: "127.0.0.1", Port: *cport}
		o.Routes = natsserver.RoutesFromStr(*routes)
	}
	s, err := natsserver.NewServer(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
	if *verbose {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		fmt.Fprintln(os.Stderr, "natsd: not ready")
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "listening", s.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
}
