package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fleetd/fleetd/internal/alert"
	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/sink"
)

// clusterConfig applies the cluster's configuration bucket to this
// node's alert evaluator (zones, rules) and sink dispatcher
// (cluster.ConfigTarget).
type clusterConfig struct {
	alerts *alert.Evaluator
	sinks  *sink.Dispatcher
}

func (c clusterConfig) Apply(cs []cluster.Change) error {
	var errs []error
	var rules []alert.NamedRule
	flush := func() {
		if len(rules) == 0 {
			return
		}
		if _, _, err := c.alerts.PutRules(rules); err != nil {
			// All or none: one bad rule would keep the others out.
			for _, r := range rules {
				if _, err := c.alerts.PutRule(r.Name, r.RuleSpec); err != nil {
					errs = append(errs, err)
				}
			}
		}
		rules = rules[:0]
	}
	for _, ch := range cs {
		if ch.Kind == cluster.KindRule && !ch.Delete {
			var spec alert.RuleSpec
			if err := json.Unmarshal(ch.Value, &spec); err != nil {
				errs = append(errs, fmt.Errorf("server: rule %q from the bucket: %w", ch.Name, err))
				continue
			}
			if i := len(rules) - 1; i >= 0 && rules[i].Name == ch.Name {
				rules[i].RuleSpec = spec
				continue
			}
			if containsRule(rules, ch.Name) {
				flush()
			}
			rules = append(rules, alert.NamedRule{Name: ch.Name, RuleSpec: spec})
			continue
		}
		flush()
		var err error
		switch {
		case ch.Kind == cluster.KindRule:
			err = c.alerts.DeleteRule(ch.Name)
		case ch.Kind == cluster.KindZone && ch.Delete:
			err = c.alerts.DeleteZone(ch.Name)
		case ch.Kind == cluster.KindZone:
			_, err = c.alerts.PutZone(ch.Name, bytes.NewReader(ch.Value))
		case ch.Kind == cluster.KindSink && ch.Delete:
			err = c.sinks.Delete(ch.Name)
			if errors.Is(err, sink.ErrNotFound) {
				err = nil
			}
		case ch.Kind == cluster.KindSink:
			var sc sink.Config
			if sc, err = sink.ParseConfig(ch.Value); err == nil {
				_, err = c.sinks.Put(ch.Name, sc)
			}
		}
		if err != nil && !errors.Is(err, alert.ErrNotFound) {
			errs = append(errs, fmt.Errorf("server: %s %q from the bucket: %w", ch.Kind, ch.Name, err))
		}
	}
	flush()
	return errors.Join(errs...)
}

func containsRule(rs []alert.NamedRule, name string) bool {
	for _, r := range rs {
		if r.Name == name {
			return true
		}
	}
	return false
}

func (c clusterConfig) Names(k cluster.Kind) []string {
	var names []string
	switch k {
	case cluster.KindZone:
		for _, z := range c.alerts.Zones() {
			names = append(names, z.Name)
		}
	case cluster.KindRule:
		for _, r := range c.alerts.Rules() {
			names = append(names, r.Name)
		}
	case cluster.KindSink:
		for _, v := range c.sinks.List() {
			names = append(names, v.Name)
		}
	}
	return names
}

func (c clusterConfig) Split(body []byte) ([]cluster.Change, error) {
	rs, err := alert.DecodeRules(body)
	if err != nil {
		return nil, err
	}
	cs := make([]cluster.Change, len(rs))
	for i, r := range rs {
		v, err := json.Marshal(r.RuleSpec)
		if err != nil {
			return nil, fmt.Errorf("server: rule %q: %w", r.Name, err)
		}
		cs[i] = cluster.Change{Kind: cluster.KindRule, Name: r.Name, Value: v}
	}
	return cs, nil
}
