package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fleetd/fleetd/internal/rules"
)

func init() {
	register("rules", "check an alert rule or print its compiled bytecode", runRules)
}

const rulesUsage = `Usage:
  fleetd rules check  '<rule>' [--zone NAME ...]   print "ok", or the error under the source (exit 1)
  fleetd rules disasm '<rule>' [--zone NAME ...]   print the compiled bytecode, one instruction a line

A rule is a condition on one GPS update of one truck, true when the alert
should fire. It is checked and compiled once and then evaluated on every
update.

  fields     speed (km/h), heading (deg), lat, lon, ts (Unix s);
             prev.speed, prev.heading, prev.lat, prev.lon, prev.ts (the
             truck's previous update; equal to the current values if none);
             dt (s since the previous update), moved_m (m moved since it)
  functions  inside("zone"), near("zone", metres), distance_m(lat, lon),
             abs(x), min(a, b), max(a, b), hour() (UTC hour of ts, 0-23)
  operators  + - * / % (and unary -), < <= > >= == !=, && || !, ( )
             with Go's precedence; && and || short-circuit
  values     numbers (90, 2.5, 1e3), true, false, "zone names"

A rule must be a bool. Names, argument counts and types, and zone names are
checked before the rule runs; errors point at the offending text. Division
by zero gives ±Inf or NaN, and comparisons with NaN are false (!= is true).

Examples:
  speed > 90 && !inside("depot-7")      speeding outside the depot
  prev.speed - speed > 30 && dt < 3     harsh braking

  fleetd rules check 'speed > 90 && !inside("depot-7")' --zone depot-7
  fleetd rules disasm 'prev.speed - speed > 30 && dt < 3'

Zones named with --zone (repeatable) are the known zones, numbered from 1
in the order given; without them a rule that names a zone does not check.
Put -- before a rule that starts with '-'.

Flags:
`

// runRules runs "fleetd rules <check|disasm> ...": args are the arguments
// after "rules".
func runRules(args []string) int {
	return runRulesTo(args, os.Stdout, os.Stderr)
}

func runRulesTo(args []string, stdout, stderr io.Writer) int {
	var zones zoneList
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&zones, "zone", "a known zone `NAME` (repeatable)")
	help := func(w io.Writer) {
		fmt.Fprint(w, rulesUsage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	// flag reports a bad flag on stderr itself; the help goes to stdout
	// when asked for, and is only pointed to on a usage error.
	fs.Usage = func() {}
	usageErr := func() int {
		fmt.Fprintln(stderr, "Run 'fleetd rules --help' for the rule language and flags.")
		return 2
	}

	if len(args) == 0 {
		fmt.Fprintln(stderr, "fleetd rules: want a command: check or disasm")
		return usageErr()
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		help(stdout)
		return 0
	}
	cmd := args[0]
	if cmd != "check" && cmd != "disasm" {
		fmt.Fprintf(stderr, "fleetd rules: unknown command %q (want check or disasm)\n", cmd)
		return usageErr()
	}
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		help(stdout)
		return 0
	}
	if err != nil {
		return usageErr() // fs printed the error
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "fleetd rules %s: want one rule (quote it), got %d arguments\n", cmd, len(pos))
		return usageErr()
	}
	src := pos[0]

	p, err := rules.Compile(src, zones)
	if err != nil {
		var e *rules.Error
		if errors.As(err, &e) {
			fmt.Fprintln(stderr, e.Detail())
			if len(zones) == 0 && strings.HasPrefix(e.Msg, "unknown zone") {
				fmt.Fprintln(stderr, "(name the known zones with --zone NAME)")
			}
		} else {
			fmt.Fprintln(stderr, "fleetd rules:", err)
		}
		return 1
	}
	if cmd == "check" {
		fmt.Fprintln(stdout, "ok")
		return 0
	}
	fmt.Fprint(stdout, p.Disasm())
	if zone, radius, ok := p.ZoneGuard(); ok {
		fmt.Fprintf(stdout, "; zone guard: true only within %g m of zone %q (id %d)\n", radius, zones[zone-1], zone)
	}
	return 0
}

// parseInterleaved parses flags that may come before or after the
// positional arguments ("disasm '<rule>' --zone a"), which flag.Parse
// alone stops at. Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, nil
}

// zoneList is the --zone flag and the zones' resolver: the zone named
// i-th has ID i+1.
type zoneList []string

func (z *zoneList) String() string { return strings.Join(*z, ",") }

func (z *zoneList) Set(name string) error {
	if name == "" {
		return errors.New("empty zone name")
	}
	*z = append(*z, name)
	return nil
}

func (z zoneList) ZoneID(name string) (int, bool) {
	for i, n := range z {
		if n == name {
			return i + 1, true
		}
	}
	return 0, false
}

func (z zoneList) ZoneNames() []string { return z }
