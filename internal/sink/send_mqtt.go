package sink

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/fleetd/fleetd/internal/outbox"
)

// mqttBatch is how many events a lane publishes before awaiting their
// PUBACKs.
const mqttBatch = 64

// mqttSender publishes QoS 1 to a topic, each event acknowledged by the
// broker's PUBACK. MQTT 3.1.1 has no headers: the event ID is in the
// payload only.
type mqttSender struct {
	url, topic, name string
	timeout          time.Duration
	log              *slog.Logger

	mu struct {
		sync.Mutex
		c paho.Client
	}
}

func newMQTT(name string, c Config, log *slog.Logger) *mqttSender {
	return &mqttSender{url: c.URL, topic: c.Topic, name: name, timeout: time.Duration(c.Timeout), log: log}
}

func (m *mqttSender) client() (paho.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.c != nil && m.mu.c.IsConnectionOpen() {
		return m.mu.c, nil
	}
	if m.mu.c != nil {
		m.mu.c.Disconnect(0)
		m.mu.c = nil
	}
	o := paho.NewClientOptions().AddBroker(m.url).SetClientID("fleetd-sink-" + m.name).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(m.timeout).SetWriteTimeout(m.timeout).SetOrderMatters(false)
	c := paho.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(m.timeout) {
		c.Disconnect(0)
		return nil, fmt.Errorf("mqtt: connecting to %s: timed out", redactedURL(m.url))
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("mqtt: connecting to %s: %w", redactedURL(m.url), err)
	}
	m.mu.c = c
	return c, nil
}

func (m *mqttSender) send(ctx context.Context, recs []outbox.Record) (int, error) {
	c, err := m.client()
	if err != nil {
		return 0, err
	}
	toks := make([]paho.Token, len(recs))
	for i := range recs {
		toks[i] = c.Publish(m.topic, 1, false, recs[i].Payload)
	}
	deadline := time.Now().Add(m.timeout)
	for i, t := range toks {
		select {
		case <-t.Done():
		case <-ctx.Done():
			return i, fmt.Errorf("mqtt: %w", ctx.Err())
		case <-time.After(time.Until(deadline)):
			m.drop(c)
			return i, fmt.Errorf("mqtt: no PUBACK from %s within %s", redactedURL(m.url), m.timeout)
		}
		if err := t.Error(); err != nil {
			m.drop(c)
			return i, fmt.Errorf("mqtt: publishing: %w", err)
		}
	}
	return len(recs), nil
}

// drop disconnects a client that failed, so the next send connects again.
func (m *mqttSender) drop(c paho.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.c == c {
		c.Disconnect(0)
		m.mu.c = nil
	}
}

func (m *mqttSender) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.c != nil {
		m.mu.c.Disconnect(250)
		m.mu.c = nil
	}
}

// newSender builds the sender of a configuration.
func newSender(name string, c Config, log *slog.Logger) (sender, senderShape, error) {
	switch c.Type {
	case TypeWebhook:
		return newWebhook(c), senderShape{batch: 1}, nil
	case TypeNATS:
		return newNATS(name, c, log), senderShape{batch: natsBatch}, nil
	case TypeMQTT:
		return newMQTT(name, c, log), senderShape{batch: mqttBatch}, nil
	}
	return nil, senderShape{}, fmt.Errorf("%w: type %q", ErrInvalid, c.Type)
}
