package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestSimProtocols: `fleetd sim --protocol teltonika|osmand` loads the
// real binary's gateways, one TCP connection per truck for Teltonika, and
// every truck arrives.
func TestSimProtocols(t *testing.T) {
	p := start(t, "--teltonika", "127.0.0.1:0", "--osmand", "127.0.0.1:0")
	for _, tt := range []struct{ proto, target string }{
		{"teltonika", gatewayAddr(t, p, "teltonika")},
		{"osmand", "http://" + gatewayAddr(t, p, "osmand")},
	} {
		out, err := exec.Command(bin, "sim", "--protocol", tt.proto, "--target", tt.target, "--trucks", "300",
			"--rate", "600", "--duration", "2s", "--conns", "16", "--seed", "3", "--json").Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tt.proto, err, out)
		}
		var sum struct {
			Connections, Sent, Acked, Errors int64
			P99Ms                            float64 `json:"p99_ms"`
		}
		if err := json.Unmarshal(out, &sum); err != nil {
			t.Fatalf("%s: %v\n%s", tt.proto, err, out)
		}
		if sum.Errors != 0 || sum.Acked < 600 || (tt.proto == "teltonika" && sum.Connections != 300) {
			t.Fatalf("%s: %s", tt.proto, out)
		}
	}
	// 300 Teltonika trucks (IMEIs) and 300 OsmAnd ones (truck-…).
	if n := stats(t, p)["trucks"].(float64); n != 600 {
		t.Fatalf("%v trucks, want 600", n)
	}
}

// TestGatewayBadFlags: wrong gateway flags are refused before anything
// starts, with exit status 2 and the reason.
func TestGatewayBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		frag string
	}{
		{[]string{"--mqtt", "ftp://broker"}, "scheme must be tcp"},
		{[]string{"--mqtt-topic", "owntracks/#"}, "need --mqtt URL"},
		{[]string{"--osmand-speed", "furlongs"}, "want kn, mps, kmh or mph"},
		{[]string{"--teltonika-idle-timeout", "0s"}, "must be positive"},
	} {
		cmd := exec.Command(bin, append([]string{"serve", "--data", ""}, tt.args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tt.frag) {
			t.Errorf("%v: %v\n%s", tt.args, err, out)
		}
	}
}
