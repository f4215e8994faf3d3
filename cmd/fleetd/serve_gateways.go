package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/mqtt"
	"github.com/fleetd/fleetd/internal/osmand"
	"github.com/fleetd/fleetd/internal/server"
	"github.com/fleetd/fleetd/internal/teltonika"
)

// serveGatewayHelp is the device-gateway part of fleetd serve --help.
const serveGatewayHelp = `  --teltonika ADDR   accept Teltonika trackers (Codec 8, 8 Extended, 16 over
                     TCP) on ADDR, e.g. 127.0.0.1:5027 (default off). The
                     IMEI is the truck ID; a packet is acknowledged only
                     once its records are durable. Bad CRC, length or
                     garbage closes that connection (counted, logged)
  --teltonika-id-prefix P
                     put P before the IMEI to make the truck ID
  --teltonika-handshake-timeout D, --teltonika-idle-timeout D
                     close a device that sends no IMEI within D (default
                     30s), or nothing between packets for D (default 10m)
  --osmand ADDR      accept the OsmAnd protocol (OsmAnd app, Traccar
                     Client: GET/POST id, lat, lon, timestamp, speed, ...,
                     or its JSON variant) over HTTP on ADDR, e.g.
                     127.0.0.1:5055 (default off); 200 once durable, 400
                     with the reason
  --osmand-speed UNIT
                     unit of the speed parameter: kn (default, the
                     protocol's), mps, kmh or mph; the JSON variant is m/s
  --mqtt URL         subscribe to an MQTT broker (tcp://host:1883, mqtt://,
                     ssl://, ws://; user:password@ for credentials) at QoS 1
                     on a persistent session, and apply what is published:
                     OwnTracks JSON on owntracks/<user>/<device> (truck ID
                     <user>:<device>), fleetd NDJSON lines on any other
                     topic. A message is acknowledged only once durable;
                     broker restarts are survived (reconnect with backoff)
  --mqtt-topic FILTER
                     a subscription filter (repeatable; default owntracks/#)
  --mqtt-client-id ID
                     the persistent session's client ID (default
                     fleetd-<hostname>): keep it stable across restarts
                     Per-gateway counters: GET /v1/stats/gateways, /metrics
                     (fleetd_gateway_*{gateway="..."})
`

// gatewayFlags are the device-gateway flags of fleetd serve.
type gatewayFlags struct {
	teltonika, tkPrefix string
	tkHandshake, tkIdle time.Duration
	osmand, osmSpeed    string
	mqtt, mqttClient    string
	mqttTopics          listFlag
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

func (g *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.teltonika, "teltonika", "", "Teltonika TCP listen address")
	fs.StringVar(&g.tkPrefix, "teltonika-id-prefix", "", "truck ID prefix before the IMEI")
	fs.DurationVar(&g.tkHandshake, "teltonika-handshake-timeout", teltonika.DefaultHandshakeTimeout, "close devices that send no IMEI")
	fs.DurationVar(&g.tkIdle, "teltonika-idle-timeout", teltonika.DefaultIdleTimeout, "close devices silent between packets")
	fs.StringVar(&g.osmand, "osmand", "", "OsmAnd HTTP listen address")
	fs.StringVar(&g.osmSpeed, "osmand-speed", "kn", "OsmAnd speed unit")
	fs.StringVar(&g.mqtt, "mqtt", "", "MQTT broker URL")
	fs.Var(&g.mqttTopics, "mqtt-topic", "MQTT subscription filter (repeatable)")
	fs.StringVar(&g.mqttClient, "mqtt-client-id", "", "MQTT persistent session client ID")
}

// options checks the flags and makes the server's gateway options.
func (g *gatewayFlags) options() (server.Gateways, error) {
	var o server.Gateways
	if g.tkHandshake <= 0 || g.tkIdle <= 0 {
		return o, fmt.Errorf("--teltonika-handshake-timeout and --teltonika-idle-timeout must be positive")
	}
	unit, err := osmand.ParseSpeedUnit(g.osmSpeed)
	if err != nil {
		return o, fmt.Errorf("--osmand-speed: %w", err)
	}
	o.Teltonika = teltonika.Options{Addr: g.teltonika, IDPrefix: g.tkPrefix, HandshakeTimeout: g.tkHandshake, IdleTimeout: g.tkIdle}
	o.OsmAnd = osmand.Options{Addr: g.osmand, Speed: unit}
	if g.mqtt == "" && (len(g.mqttTopics) > 0 || g.mqttClient != "") {
		return o, fmt.Errorf("--mqtt-topic and --mqtt-client-id need --mqtt URL")
	}
	if g.mqtt != "" {
		if _, err := mqtt.ParseURL(g.mqtt); err != nil {
			return o, fmt.Errorf("--mqtt: %w", err)
		}
	}
	o.MQTT = mqtt.Options{URL: g.mqtt, Topics: g.mqttTopics, ClientID: g.mqttClient}
	return o, nil
}
