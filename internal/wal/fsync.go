package wal

import (
	"fmt"
	"strings"
	"time"
)

// FsyncPolicy says when appended records are made durable. The zero
// value is FsyncAlways. See doc.go for what each policy risks.
type FsyncPolicy struct {
	mode     fsyncMode
	interval time.Duration
}

type fsyncMode uint8

const (
	modeAlways fsyncMode = iota
	modeInterval
	modeNever
)

var (
	// FsyncAlways: Append returns only after an fsync covering its record
	// (group commit shares one fsync among all concurrent appenders).
	// Risk: none for acknowledged records.
	FsyncAlways = FsyncPolicy{mode: modeAlways}
	// FsyncNever: Append returns after the write; fsync happens only on
	// segment rotation and Close. Risk: on power cut or kernel crash,
	// everything since the last rotation may be lost. Process crashes
	// (kill -9) lose nothing: the kernel holds the written data.
	FsyncNever = FsyncPolicy{mode: modeNever}
)

// FsyncInterval returns the policy where Append returns after the write
// and the flusher fsyncs every d. Risk: on power cut or kernel crash,
// up to d (plus one fsync) of acknowledged records may be lost; a process
// crash (kill -9) loses nothing. d must be positive.
func FsyncInterval(d time.Duration) FsyncPolicy {
	return FsyncPolicy{mode: modeInterval, interval: d}
}

// Interval returns the fsync period of an interval policy, else 0.
func (p FsyncPolicy) Interval() time.Duration {
	if p.mode == modeInterval {
		return p.interval
	}
	return 0
}

// String renders p in the syntax ParseFsync accepts.
func (p FsyncPolicy) String() string {
	switch p.mode {
	case modeInterval:
		return "interval=" + p.interval.String()
	case modeNever:
		return "never"
	}
	return "always"
}

// ParseFsync parses "always", "never" or "interval=<duration>" (for
// example "interval=10ms").
func ParseFsync(s string) (FsyncPolicy, error) {
	switch s = strings.TrimSpace(s); {
	case s == "always":
		return FsyncAlways, nil
	case s == "never":
		return FsyncNever, nil
	case strings.HasPrefix(s, "interval="):
		d, err := time.ParseDuration(s[len("interval="):])
		if err != nil {
			return FsyncPolicy{}, fmt.Errorf("wal: bad fsync policy %q: %w", s, err)
		}
		if d <= 0 {
			return FsyncPolicy{}, fmt.Errorf("wal: bad fsync policy %q: interval must be positive", s)
		}
		return FsyncInterval(d), nil
	}
	return FsyncPolicy{}, fmt.Errorf("wal: bad fsync policy %q: want always, never or interval=<duration>", s)
}
