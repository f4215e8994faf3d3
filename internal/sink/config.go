package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/outbox"
)

// Sink types.
const (
	TypeWebhook = "webhook"
	TypeNATS    = "nats"
	TypeMQTT    = "mqtt"
)

// Event kinds.
const (
	KindFired    = "alert.fired"
	KindResolved = "alert.resolved"
	KindExpired  = "truck.expired"
	// KindEntered and KindLeft are the firing and the resolve (by an
	// update) of a rule whose whole condition is inside("zone"): see
	// alert.Alert.Zone.
	KindEntered = "zone.entered"
	KindLeft    = "zone.left"
)

var (
	kinds      = []string{KindFired, KindResolved, KindExpired, KindEntered, KindLeft}
	severities = []string{"info", "warning", "critical"}
)

// Limits and defaults of a Config.
const (
	MaxNameLen     = 64
	MaxSinks       = 64
	maxConfigBytes = 64 << 10
	maxFilterItems = 256
	maxURLLen      = 2048

	DefaultTimeout = 5 * time.Second
	DefaultMaxAge  = 24 * time.Hour
	// DefaultMaxOutboxBytes bounds a sink's outbox on disk.
	DefaultMaxOutboxBytes = outbox.DefaultMaxBytes
)

// ErrInvalid marks a configuration that is refused (a 400).
var ErrInvalid = errors.New("sink: invalid configuration")

// Filter selects the events a sink receives; an empty list passes all.
type Filter struct {
	Rules      []string `json:"rules,omitempty"`
	Severities []string `json:"severities,omitempty"`
	Kinds      []string `json:"kinds,omitempty"`
}

// Config is one sink as a client gives it (PUT /v1/sinks/{name}) and as
// sinks.json keeps it.
type Config struct {
	Type string `json:"type"`
	// URL: webhook: the http(s) URL posted to; nats: nats://host:port
	// (user:password@ allowed); mqtt: tcp://, ssl:// or ws:// broker.
	URL     string `json:"url"`
	Subject string `json:"subject,omitempty"` // nats
	Topic   string `json:"topic,omitempty"`   // mqtt
	// Secret keys the webhook's HMAC-SHA256 signature (webhook only;
	// never shown back).
	Secret string `json:"secret,omitempty"`
	// Timeout of one delivery attempt (default 5s).
	Timeout Duration `json:"timeout,omitzero"`
	// MaxAge: an event not delivered this long after it was emitted is
	// dropped to the dead-letter list (default 24h).
	MaxAge Duration `json:"max_age,omitzero"`
	// MaxOutboxBytes bounds the outbox on disk (default 1 GiB).
	MaxOutboxBytes int64  `json:"max_outbox_bytes,omitempty"`
	Filter         Filter `json:"filter,omitzero"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration is a string such as "30s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseConfig decodes and validates a sink's JSON configuration; errors
// wrap ErrInvalid.
func ParseConfig(b []byte) (Config, error) {
	if len(b) > maxConfigBytes {
		return Config{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, maxConfigBytes)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: more than one JSON value", ErrInvalid)
	}
	if err := c.check(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// CheckName validates a sink name: 1–64 of A–Z a–z 0–9 . _ -, not
// starting with a dot.
func CheckName(name string) error {
	if name == "" || len(name) > MaxNameLen || name[0] == '.' {
		return fmt.Errorf("%w: name %q: 1 to %d characters, not starting with a dot", ErrInvalid, name, MaxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%w: name %q: only letters, digits, '.', '_' and '-'", ErrInvalid, name)
		}
	}
	return nil
}

// check validates c and fills in its defaults.
func (c *Config) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if len(c.URL) > maxURLLen {
		return bad("url longer than %d bytes", maxURLLen)
	}
	u, err := url.Parse(c.URL)
	if err != nil || c.URL == "" || u.Host == "" {
		return bad("url %q: not an absolute URL with a host", c.URL)
	}
	switch c.Type {
	case TypeWebhook:
		if u.Scheme != "http" && u.Scheme != "https" {
			return bad("webhook url %q: scheme must be http or https", c.URL)
		}
		if c.Subject != "" || c.Topic != "" {
			return bad("webhook: subject and topic are for nats and mqtt")
		}
	case TypeNATS:
		if u.Scheme != "nats" && u.Scheme != "tls" {
			return bad("nats url %q: scheme must be nats or tls", c.URL)
		}
		if c.Subject == "" || strings.ContainsAny(c.Subject, " \t\r\n*>") || strings.HasPrefix(c.Subject, ".") ||
			strings.HasSuffix(c.Subject, ".") || strings.Contains(c.Subject, "..") || len(c.Subject) > 256 {
			return bad("nats subject %q: a literal subject (no wildcards, spaces or empty tokens) is required", c.Subject)
		}
		if c.Topic != "" || c.Secret != "" {
			return bad("nats: topic and secret are for mqtt and webhook")
		}
	case TypeMQTT:
		if u.Scheme != "tcp" && u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss" && u.Scheme != "mqtt" {
			return bad("mqtt url %q: scheme must be tcp, ssl, tls, mqtt, ws or wss", c.URL)
		}
		if c.Topic == "" || strings.ContainsAny(c.Topic, "+#\x00") || len(c.Topic) > 1024 {
			return bad("mqtt topic %q: a topic without wildcards is required", c.Topic)
		}
		if c.Subject != "" || c.Secret != "" {
			return bad("mqtt: subject and secret are for nats and webhook")
		}
	case "":
		return bad(`"type" is required: webhook, nats or mqtt`)
	default:
		return bad("type %q: webhook, nats or mqtt", c.Type)
	}
	if c.Timeout < 0 || c.MaxAge < 0 || c.MaxOutboxBytes < 0 {
		return bad("timeout, max_age and max_outbox_bytes must not be negative")
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(DefaultTimeout)
	}
	if c.Timeout > Duration(10*time.Minute) {
		return bad("timeout %s: at most 10m", time.Duration(c.Timeout))
	}
	if c.MaxAge == 0 {
		c.MaxAge = Duration(DefaultMaxAge)
	}
	if c.MaxOutboxBytes == 0 {
		c.MaxOutboxBytes = DefaultMaxOutboxBytes
	}
	if c.MaxOutboxBytes < 1<<20 {
		return bad("max_outbox_bytes %d: at least 1 MiB", c.MaxOutboxBytes)
	}
	f := &c.Filter
	if len(f.Rules) > maxFilterItems || len(f.Severities) > maxFilterItems || len(f.Kinds) > maxFilterItems {
		return bad("filter: at most %d items a list", maxFilterItems)
	}
	for _, s := range f.Severities {
		if !slices.Contains(severities, s) {
			return bad("filter severity %q: info, warning or critical", s)
		}
	}
	for _, k := range f.Kinds {
		if !slices.Contains(kinds, k) {
			return bad("filter kind %q: %s", k, strings.Join(kinds, ", "))
		}
	}
	for _, r := range f.Rules {
		if r == "" || len(r) > 256 {
			return bad("filter rule %q: 1 to 256 bytes", r)
		}
	}
	return nil
}

// match reports whether the filter passes an event.
func (f *Filter) match(kind, rule, severity string) bool {
	if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, kind) {
		return false
	}
	if kind == KindExpired { // no rule or severity: only kinds filter it
		return len(f.Rules) == 0 && len(f.Severities) == 0 || slices.Contains(f.Kinds, KindExpired)
	}
	if len(f.Rules) > 0 && !slices.Contains(f.Rules, rule) {
		return false
	}
	return len(f.Severities) == 0 || slices.Contains(f.Severities, severity)
}

// redactedURL is the URL with any password hidden, for showing back.
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Redacted()
}
