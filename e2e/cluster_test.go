package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The cluster tests run three NATS servers with JetStream (testdata/natsd,
// the nats-server module built as a process so that it can be killed -9)
// and three fleetd nodes with --nats on loopback.

var (
	natsdOnce sync.Once
	natsdBin  string
	natsdErr  error
)

func buildNatsd(t testing.TB) string {
	t.Helper()
	natsdOnce.Do(func() {
		natsdBin = filepath.Join(filepath.Dir(bin), "natsd")
		b := exec.Command("go", "build", "-o", natsdBin, "./testdata/natsd")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		natsdErr = b.Run()
	})
	if natsdErr != nil {
		t.Fatalf("building testdata/natsd: %v", natsdErr)
	}
	return natsdBin
}

// natsProc is one NATS server process.
type natsProc struct {
	t       testing.TB
	args    []string
	url     string
	cmd     *exec.Cmd
	exited  chan struct{}
	mu      sync.Mutex
	stderr  bytes.Buffer
	running bool
}

var natsListening = regexp.MustCompile(`listening (\S+)`)

func (n *natsProc) start() {
	n.t.Helper()
	n.cmd = exec.Command(buildNatsd(n.t), n.args...)
	pr, err := n.cmd.StderrPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			n.mu.Lock()
			n.stderr.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
			if !once && natsListening.MatchString(sc.Text()) {
				once = true
				close(ready)
			}
		}
		_ = n.cmd.Wait()
		close(n.exited)
	}()
	select {
	case <-ready:
	case <-n.exited:
		n.t.Fatalf("natsd exited: %s", n.stderr.String())
	case <-time.After(30 * time.Second):
		n.t.Fatalf("natsd not ready: %s", n.stderr.String())
	}
	n.running = true
}

func (n *natsProc) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.running = false
}

// startNATS starts a 3-server JetStream cluster and returns its servers.
func startNATS(t testing.TB) []*natsProc {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range 6 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	routes := fmt.Sprintf("nats-route://127.0.0.1:%d,nats-route://127.0.0.1:%d,nats-route://127.0.0.1:%d", ports[3], ports[4], ports[5])
	var ns []*natsProc
	for i := range 3 {
		n := &natsProc{t: t, url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i]), args: []string{
			"-name", fmt.Sprintf("n%d", i), "-port", strconv.Itoa(ports[i]), "-cluster-port", strconv.Itoa(ports[3+i]),
			"-routes", routes, "-store", filepath.Join(t.TempDir(), "js")}}
		n.start()
		ns = append(ns, n)
	}
	t.Cleanup(func() {
		for _, n := range ns {
			if n.running {
				n.kill()
			}
		}
	})
	return ns
}

// natsURLs lists the servers' URLs starting with the i-th, so that each
// node connects to another server first.
func natsURLs(ns []*natsProc, i int) string {
	var us []string
	for j := range ns {
		us = append(us, ns[(i+j)%len(ns)].url)
	}
	return strings.Join(us, ",")
}

// post sends one NDJSON body without failing the test on a network error
// (a node may be dead): the status and body, or the error.
func post(addr, body string) (int, []byte, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/positions", strings.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header.Get("Fleetd-Token"), err
}

// tokenMax merges tokens: the highest sequence of each partition.
func tokenMax(acc map[int]uint64, tok string) {
	if tok == "" {
		return
	}
	for part := range strings.SplitSeq(tok, ",") {
		ps, ss, _ := strings.Cut(part, ":")
		p, _ := strconv.Atoi(ps)
		s, _ := strconv.ParseUint(ss, 10, 64)
		acc[p] = max(acc[p], s)
	}
}

func tokenString(acc map[int]uint64) string {
	var parts []string
	for p, s := range acc {
		parts = append(parts, fmt.Sprintf("%d:%d", p, s))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// truckRow is one truck as /v1/within's NDJSON rows carry it.
type truckRow struct {
	ID      string  `json:"id"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	TS      int64   `json:"ts"`
	Speed   float64 `json:"speed"`
	Heading float64 `json:"heading"`
}

// fleetOf reads every truck of a node (after the token, if any).
func fleetOf(t *testing.T, p *proc, token string) map[string]truckRow {
	t.Helper()
	path := "/v1/within?bbox=-180,-90,180,90"
	if token != "" {
		path += "&after=" + token
	}
	r := p.do("GET", path, "", "Accept", "application/x-ndjson")
	// A node whose NATS server died catches up once its consumers are
	// back: the read answers 503 (after 2 s) until then.
	for deadline := time.Now().Add(30 * time.Second); r.code == 503 && time.Now().Before(deadline); {
		r = p.do("GET", path, "", "Accept", "application/x-ndjson")
	}
	if r.code != 200 {
		t.Fatalf("%s: %d %s", path, r.code, r.body)
	}
	out := map[string]truckRow{}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		var row truckRow
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("row %q: %v", sc.Text(), err)
		}
		out[row.ID] = row
	}
	return out
}

// haversine in metres on fleetd's sphere, for the brute-force kNN check.
func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371008.8
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

// checkNearby compares a node's 10 nearest trucks with brute force over
// its fleet, at a few random points.
func checkNearby(t *testing.T, p *proc, fleet map[string]truckRow, r *rand.Rand) {
	t.Helper()
	for range 5 {
		lat, lon := math.Round((r.Float64()*10+40)*1e6)/1e6, math.Round((r.Float64()*10-80)*1e6)/1e6
		var near struct {
			Results []struct {
				ID   string  `json:"id"`
				Dist float64 `json:"distance_m"`
			} `json:"results"`
		}
		if err := json.Unmarshal(p.do("GET", fmt.Sprintf("/v1/nearby?lat=%f&lon=%f&k=10", lat, lon), "").want(t, 200), &near); err != nil {
			t.Fatal(err)
		}
		var ds []float64
		for _, row := range fleet {
			ds = append(ds, haversine(lat, lon, row.Lat, row.Lon))
		}
		slices.Sort(ds)
		if len(near.Results) != min(10, len(ds)) {
			t.Fatalf("nearby: %d results, want %d", len(near.Results), min(10, len(ds)))
		}
		for i, h := range near.Results {
			if math.Abs(h.Dist-ds[i]) > 0.01 {
				t.Fatalf("nearby #%d at %f,%f: %s at %.3f m, brute force %.3f m", i, lat, lon, h.ID, h.Dist, ds[i])
			}
		}
	}
}

// natsFailoverBound bounds, after a kill -9 of the NATS server that leads
// the stream, how long until a write sent after the kill is acknowledged
// and until every node has applied it. NATS elects a new stream (and
// perhaps meta) leader 4-9 s after the last heartbeat of the dead one
// (its raft election timeout); the rest is fleetd's detection (two
// missed 0.5 s heartbeats), a new consumer and the publisher's retry.
const natsFailoverBound = 15 * time.Second

// TestCluster runs three NATS servers and three fleetd nodes (default
// flags but --nats), writers posting to the nodes in turn and retrying a
// failed body on the next node. Mid-ingest it kills -9 one fleetd node
// and restarts it on its data directory, then kills -9 the NATS server
// that leads the stream (its consumers and some nodes' connections die
// with it): a write sent after the kill must be acknowledged, and
// applied on every node, within natsFailoverBound. After quiescence
// every node must hold the same fleet, every acknowledged update (its
// truck at that ts or newer), kNN must equal brute force on each node,
// and a read with a write's token on another node must see the write.
func TestCluster(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	ns := startNATS(t)
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "c")}
	nodes := make([]*proc, 3)
	for i := range nodes {
		nodes[i] = startData(t, dirs[i], "--nats", natsURLs(ns, i))
	}
	var addrs [3]atomic.Pointer[string]
	for i, p := range nodes {
		a := p.addr
		addrs[i].Store(&a)
	}

	// Read your writes across nodes.
	code, body, tok, err := post(nodes[0].addr, `{"id":"truck-ryw","lat":40.5,"lon":-74.25,"ts":`+strconv.FormatInt(time.Now().Unix()-10, 10)+`}`)
	if err != nil || code != 200 || tok == "" || !strings.Contains(string(body), `"token":"`+tok+`"`) {
		t.Fatalf("post: %d %s token %q %v", code, body, tok, err)
	}
	r := nodes[1].do("GET", "/v1/trucks/truck-ryw", "", "Fleetd-Token", tok)
	if r.code != 200 || !strings.Contains(string(r.body), `"lat":40.5`) {
		t.Fatalf("read with the token on another node: %d %s", r.code, r.body)
	}
	nodes[2].do("GET", "/v1/trucks/truck-ryw?after=0:99999999", "").wantErr(t, 503, "has not applied")
	nodes[2].do("GET", "/v1/trucks/truck-ryw?after=zz", "").wantErr(t, 400, "bad token")

	const trucks, writers, perBody = 3000, 2, 500
	base := time.Now().Unix() - 3000
	var (
		mu      sync.Mutex
		ackedTS = map[string]int64{} // truck → newest acknowledged ts
		tokens  = map[int]uint64{}
		acks    atomic.Int64
		retries atomic.Int64
		stop    atomic.Bool
		// The NATS kill: when, and the first write sent after it that was
		// acknowledged (its ack time and token).
		killedAt  atomic.Pointer[time.Time]
		resumedAt time.Time
		resumeTok string
		resumed   = make(chan struct{})
	)
	var wg sync.WaitGroup
	for w := range writers {
		rr := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
		wg.Go(func() {
			for round := 0; !stop.Load(); round++ {
				var b strings.Builder
				ts := map[string]int64{}
				for range perBody {
					id := fmt.Sprintf("truck-%05d", rr.IntN(trucks))
					tsv := base + int64(round) + int64(rr.IntN(5))
					fmt.Fprintf(&b, `{"id":%q,"lat":%.7f,"lon":%.7f,"ts":%d,"speed":%.1f,"heading":%d}`+"\n",
						id, 40+rr.Float64()*10, -80+rr.Float64()*10, tsv, rr.Float64()*100, rr.IntN(360))
					ts[id] = max(ts[id], tsv)
				}
				for try := 0; ; try++ {
					addr := *addrs[(w+round+try)%3].Load()
					sent := time.Now()
					code, _, tok, err := post(addr, b.String())
					if err == nil && code == 200 {
						mu.Lock()
						for id, v := range ts {
							ackedTS[id] = max(ackedTS[id], v)
						}
						tokenMax(tokens, tok)
						if k := killedAt.Load(); k != nil && sent.After(*k) && resumeTok == "" {
							resumedAt, resumeTok = time.Now(), tok
							close(resumed)
						}
						mu.Unlock()
						acks.Add(1)
						break
					}
					retries.Add(1)
					if try > 200 {
						t.Errorf("writer %d: body not acknowledged after %d tries: %d %v", w, try, code, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	waitAcks := func(n int64) {
		deadline := time.Now().Add(60 * time.Second)
		for acks.Load() < n && time.Now().Before(deadline) && !t.Failed() {
			time.Sleep(20 * time.Millisecond)
		}
		if acks.Load() < n {
			t.Fatalf("only %d bodies acknowledged, waited for %d", acks.Load(), n)
		}
	}
	waitAcks(20)
	// kill -9 a fleetd node during ingest; the writers retry elsewhere.
	if err := nodes[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nodes[1].exited
	waitAcks(acks.Load() + 20)
	nodes[1] = startData(t, dirs[1], "--nats", natsURLs(ns, 1))
	nodes[1].waitLog("resumed") // the positions file was read
	a := nodes[1].addr
	addrs[1].Store(&a)
	waitAcks(acks.Load() + 20)
	// kill -9 the NATS server that leads the stream, during ingest
	// (FLEETD_E2E_NATS_KILL=follower: one that does not; ingest then
	// goes on, and the consumers it held are replaced).
	leader := streamLeader(t, nodes[0], ns)
	victim, role := leader, "stream leader"
	if os.Getenv("FLEETD_E2E_NATS_KILL") == "follower" {
		victim, role = (leader+1)%len(ns), "a stream follower"
	}
	ns[victim].kill()
	now := time.Now()
	killedAt.Store(&now)
	killedAcks := acks.Load()
	applied := make([]time.Duration, len(nodes))
	var mon sync.WaitGroup
	for i, p := range nodes {
		mon.Go(func() {
			select {
			case <-resumed:
			case <-time.After(2 * natsFailoverBound):
				return
			}
			mu.Lock()
			tok := resumeTok
			mu.Unlock()
			applied[i] = awaitToken(p.addr, tok, now.Add(2*natsFailoverBound)).Sub(now)
		})
	}
	waitAcks(killedAcks + 20)
	mon.Wait()
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		return
	}
	mu.Lock()
	pause := resumedAt.Sub(now)
	mu.Unlock()
	t.Logf("NATS server n%d (%s) killed: the first write sent after it was acknowledged %v later; nodes applied it %v, %v, %v after the kill",
		victim, role, pause.Round(time.Millisecond), applied[0].Round(time.Millisecond), applied[1].Round(time.Millisecond), applied[2].Round(time.Millisecond))
	if pause > natsFailoverBound {
		t.Errorf("ingest paused %v after the NATS server's kill, bound %v", pause, natsFailoverBound)
	}
	for i, d := range applied {
		if d <= 0 || d > natsFailoverBound {
			t.Errorf("node %d applied the first write after the NATS server's kill %v after it, bound %v", i, d, natsFailoverBound)
		}
	}
	t.Logf("%d bodies of %d updates acknowledged, %d retries", acks.Load(), perBody, retries.Load())

	tok = tokenString(tokens)
	var fleets []map[string]truckRow
	for i, p := range nodes {
		start := time.Now()
		f := fleetOf(t, p, tok)
		t.Logf("node %d reached the writers' token %v after they stopped", i, time.Since(start).Round(time.Millisecond))
		if os.Getenv("CLUSTER_LOGS") != "" {
			t.Logf("node %d's log:\n%s", i, p.logText())
		}
		for id, ts := range ackedTS {
			if row, ok := f[id]; !ok || row.TS < ts {
				t.Fatalf("node %d lost an acknowledged update: %s at ts %d, has %+v (%v)", i, id, ts, row, ok)
			}
		}
		fleets = append(fleets, f)
	}
	// Every node has applied the token; unacknowledged retries may still
	// be in flight in the stream for a moment: compare once they agree.
	deadline := time.Now().Add(20 * time.Second)
	for {
		same := true
		for i := 1; i < 3; i++ {
			if !mapsEqual(fleets[0], fleets[i]) {
				same = false
			}
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			for i := 1; i < 3; i++ {
				for id, row := range fleets[0] {
					if fleets[i][id] != row {
						t.Fatalf("node %d differs from node 0: %s is %+v there, %+v here (%d vs %d trucks)", i, id, fleets[i][id], row, len(fleets[i]), len(fleets[0]))
					}
				}
			}
			t.Fatalf("nodes differ in size: %d %d %d", len(fleets[0]), len(fleets[1]), len(fleets[2]))
		}
		time.Sleep(200 * time.Millisecond)
		for i, p := range nodes {
			fleets[i] = fleetOf(t, p, "")
		}
	}
	rr := rand.New(rand.NewPCG(uint64(seed), 99))
	for i, p := range nodes {
		checkNearby(t, p, fleets[i], rr)
	}
	var st struct {
		Cluster struct {
			Partitions int     `json:"partitions"`
			Behind     uint64  `json:"behind_messages"`
			Replicas   int     `json:"stream_replicas"`
			BPU        float64 `json:"published_bytes_per_update"`
			LagP99     float64 `json:"apply_lag_p99_ms"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(nodes[0].do("GET", "/v1/stats", "").want(t, 200), &st); err != nil {
		t.Fatal(err)
	}
	if st.Cluster.Partitions != 8 || st.Cluster.Replicas != 3 || st.Cluster.BPU <= 0 {
		t.Fatalf("stats: %+v", st.Cluster)
	}
	t.Logf("node 0: %.1f bytes per update published, apply lag p99 %.1f ms", st.Cluster.BPU, st.Cluster.LagP99)
	if m := string(nodes[2].do("GET", "/metrics", "").body); !strings.Contains(m, "fleetd_cluster_applied_seq{partition=\"7\"}") {
		t.Fatalf("metrics lack fleetd_cluster_applied_seq")
	}
}

// streamLeader is the index in ns of the NATS server leading the stream,
// as node p's stats say (server names are n0, n1, …).
func streamLeader(t *testing.T, p *proc, ns []*natsProc) int {
	t.Helper()
	var st struct {
		Cluster struct {
			Leader string `json:"stream_leader"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(p.do("GET", "/v1/stats", "").want(t, 200), &st); err != nil {
		t.Fatal(err)
	}
	for i := range ns {
		if st.Cluster.Leader == fmt.Sprintf("n%d", i) {
			return i
		}
	}
	t.Fatalf("stream leader %q is none of the servers", st.Cluster.Leader)
	return 0
}

// awaitToken polls a node with a read-your-writes token until it answers
// 200 (the node has applied it), and returns when; the zero time if it
// did not before deadline. Safe to call from any goroutine.
func awaitToken(addr, tok string, deadline time.Time) time.Time {
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + addr + "/v1/trucks/truck-ryw?after=" + tok)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				return time.Now()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}
}

func mapsEqual(a, b map[string]truckRow) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
