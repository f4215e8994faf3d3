package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetd/fleetd/internal/fleet"
	"github.com/fleetd/fleetd/internal/gateway"
	"github.com/fleetd/fleetd/internal/ingest"
)

// Defaults of Options.
const (
	DefaultTopic     = "owntracks/#"
	DefaultQueue     = 4096 // messages received and not yet acknowledged
	DefaultBatchWait = 2 * time.Millisecond
	maxReconnect     = 10 * time.Second
)

// Options configures a Client.
type Options struct {
	// URL is the broker: tcp://host:1883 (also mqtt://), ssl:// or tls://
	// for TLS, ws:// or wss://; user:password@ in it are the credentials.
	URL string
	// Topics are the subscription filters (default DefaultTopic).
	Topics []string
	// ClientID names the persistent session at the broker; it must stay
	// the same across restarts for the broker to keep the messages of a
	// fleetd that is down (default "fleetd-" + the host name).
	ClientID string
	// MaxAhead is how far a ts may be ahead of the server's clock (0: no
	// limit).
	MaxAhead time.Duration
	// Queue bounds the messages held between receipt and their
	// acknowledgement (default DefaultQueue); when it is full fleetd stops
	// reading from the broker.
	Queue  int
	Logger *slog.Logger
}

// Client is fleetd's subscription to a broker (doc.go).
type Client struct {
	o     Options
	c     paho.Client
	com   *gateway.Committer
	in    chan paho.Message
	quit  chan struct{}
	done  chan struct{}
	log   *slog.Logger
	Stats gateway.Stats

	rejLog, badLog, errLog gateway.Limiter
	closeOnce              sync.Once
}

// Connect starts the client. It returns once the options are checked;
// the connection itself is made (and remade) in the background, with
// backoff up to 10 s, so a broker that is down at startup is not an
// error.
func Connect(o Options, com *gateway.Committer) (*Client, error) {
	u, err := ParseURL(o.URL)
	if err != nil {
		return nil, err
	}
	if len(o.Topics) == 0 {
		o.Topics = []string{DefaultTopic}
	}
	for _, t := range o.Topics {
		if t == "" {
			return nil, errors.New("mqtt: empty topic filter")
		}
	}
	if o.ClientID == "" {
		host, _ := os.Hostname()
		o.ClientID = "fleetd-" + host
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Client{o: o, com: com, in: make(chan paho.Message, o.Queue), quit: make(chan struct{}), done: make(chan struct{}), log: o.Logger}
	for _, l := range []*gateway.Limiter{&c.rejLog, &c.badLog, &c.errLog} {
		l.Log = o.Logger
	}
	po := paho.NewClientOptions()
	user := u.User
	u.User = nil
	po.AddBroker(u.String())
	if user != nil {
		po.SetUsername(user.Username())
		if p, ok := user.Password(); ok {
			po.SetPassword(p)
		}
	}
	po.SetClientID(o.ClientID)
	po.SetCleanSession(false) // the broker keeps our subscriptions and queues QoS 1 messages while we are away
	po.SetAutoAckDisabled(true)
	po.SetOrderMatters(true) // the handler only queues, in the order received: PUBACKs go out in that order
	po.SetAutoReconnect(true)
	po.SetConnectRetry(true)
	po.SetConnectRetryInterval(time.Second)
	po.SetMaxReconnectInterval(maxReconnect)
	po.SetKeepAlive(30 * time.Second)
	po.SetDefaultPublishHandler(c.receive)
	po.SetOnConnectHandler(c.connected)
	po.SetConnectionLostHandler(func(_ paho.Client, err error) {
		c.Stats.Connections.Store(0)
		c.errLog.Warn("mqtt: connection to the broker lost; reconnecting", "broker", u.String(), "error", err)
	})
	c.c = paho.NewClient(po)
	c.c.Connect() // with ConnectRetry, retries in the background
	go c.run()
	o.Logger.Info("mqtt connecting", "broker", u.String(), "client_id", o.ClientID, "topics", o.Topics)
	return c, nil
}

// ParseURL checks a broker URL (Options.URL) and returns it as Paho takes
// it (mqtt:// becomes tcp://).
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt: broker URL %q: want e.g. tcp://127.0.0.1:1883", s)
	}
	switch u.Scheme {
	case "mqtt":
		u.Scheme = "tcp"
	case "tcp", "ssl", "tls", "ws", "wss":
	default:
		return nil, fmt.Errorf("mqtt: broker URL %q: scheme must be tcp, mqtt, ssl, tls, ws or wss", s)
	}
	return u, nil
}

// connected subscribes (again) to every filter at QoS 1.
func (c *Client) connected(pc paho.Client) {
	c.Stats.Connections.Store(1)
	c.Stats.ConnectionsTotal.Add(1)
	filters := make(map[string]byte, len(c.o.Topics))
	for _, t := range c.o.Topics {
		filters[t] = 1
	}
	// A nil callback: messages go to the default handler, once each even
	// where filters overlap.
	tok := pc.SubscribeMultiple(filters, nil)
	go func() {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			c.errLog.Warn("mqtt: subscribing failed", "topics", c.o.Topics, "error", tok.Error())
			return
		}
		c.log.Info("mqtt subscribed", "topics", c.o.Topics)
	}()
}

// receive queues a message; it blocks while the queue is full, which
// stops paho reading from the broker (back-pressure, nothing dropped).
func (c *Client) receive(_ paho.Client, m paho.Message) {
	select {
	case c.in <- m:
	case <-c.quit:
	}
}

// Close disconnects; messages received and not yet durable are not
// acknowledged, so the broker delivers them again to the next session.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		close(c.quit)
		<-c.done
		c.c.Disconnect(250)
		c.Stats.Connections.Store(0)
	})
}

// run takes the queued messages in batches (what arrived within
// DefaultBatchWait of the first, up to the queue's size), decodes them,
// commits their points and then acknowledges each message.
func (c *Client) run() {
	defer close(c.done)
	var (
		msgs  []paho.Message
		dec   ingest.Decoder
		arena []byte
		job   = gateway.NewJob()
	)
	dec.MaxAhead = int64(c.o.MaxAhead / time.Second)
	for {
		select {
		case m := <-c.in:
			msgs = append(msgs[:0], m)
		case <-c.quit:
			return
		}
		received := time.Now()
		timer := time.NewTimer(DefaultBatchWait)
	fill:
		for len(msgs) < cap(c.in) {
			select {
			case m := <-c.in:
				msgs = append(msgs, m)
			case <-timer.C:
				break fill
			case <-c.quit:
				timer.Stop()
				return
			}
		}
		timer.Stop()
		job.Updates, arena = job.Updates[:0], arena[:0]
		now := received.Unix()
		for _, m := range msgs {
			job.Updates = c.decode(&dec, job.Updates, &arena, m, now)
		}
		// Until the points are durable nothing is acknowledged; the engine's
		// failures (a full disk) are retried once a second, and the broker
		// keeps the messages if fleetd stops meanwhile.
		for {
			err := c.com.Commit(job)
			if err == nil {
				break
			}
			c.Stats.CommitErrors.Add(1)
			c.errLog.Warn("mqtt: messages not acknowledged: the engine could not make them durable; retrying",
				"messages", len(msgs), "error", err)
			select {
			case <-time.After(time.Second):
			case <-c.quit:
				return
			}
		}
		c.Stats.Points.Add(int64(len(job.Updates)))
		for _, m := range msgs {
			m.Ack()
		}
		c.Stats.Acks.Add(int64(len(msgs)))
		lat := time.Since(received)
		for range msgs {
			c.Stats.AckLatency.Observe(lat)
		}
		clear(msgs)
		clear(job.Updates)
		dec.Reset()
	}
}

// decode appends the checked points of one message.
func (c *Client) decode(dec *ingest.Decoder, dst []fleet.Update, arena *[]byte, m paho.Message, now int64) []fleet.Update {
	c.Stats.Frames.Add(1)
	ahead := int64(c.o.MaxAhead / time.Second)
	if id, ok := OwnTracksID(m.Topic()); ok {
		u, err := DecodeOwnTracks(id, m.Payload(), now)
		if err == nil {
			err = gateway.Check(&u, now, ahead)
		}
		switch {
		case err == nil:
			return append(dst, u)
		case errors.Is(err, errNotLocation):
		case errors.Is(err, ErrPayload):
			c.Stats.BadFrames.Add(1)
			c.badLog.Warn("mqtt: bad OwnTracks message (acknowledged, not applied)", "topic", m.Topic(), "error", err)
		default:
			c.Stats.Rejected.Add(1)
			c.rejLog.Warn("mqtt: point not applied (acknowledged)", "topic", m.Topic(), "error", err)
		}
		return dst
	}
	n := len(dst)
	dst, rejected, first := appendNDJSON(dec, dst, arena, m.Payload(), now)
	// ingest's rules are the engine's; the NDJSON decoder has already
	// judged each line (MaxAhead included).
	if rejected > 0 {
		c.Stats.Rejected.Add(int64(rejected))
		c.rejLog.Warn("mqtt: NDJSON lines not applied (acknowledged)", "topic", m.Topic(), "rejected", rejected, "first", first)
		if len(dst) == n {
			c.Stats.BadFrames.Add(1)
		}
	}
	return dst
}
