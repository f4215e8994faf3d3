package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxPartitions bounds --nats-partitions (and so a token's length).
const maxPartitions = 1024

// ErrBadToken is wrapped by every error ParseToken returns.
var ErrBadToken = errors.New("cluster: bad token")

// Mark is one stream position a write reached: the stream sequence of
// the message it published to a partition.
type Mark struct {
	Partition int
	Seq       uint64
}

// Token is the stream positions a write reached, one mark per partition it
// touched, sorted by partition. Its text form is "p:seq,p:seq…"
// ("3:1042,7:1045"); the empty token is "" and is always reached.
type Token []Mark

// String is the text form of t.
func (t Token) String() string {
	var b []byte
	for i, m := range t {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(m.Partition), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, m.Seq, 10)
	}
	return string(b)
}

// add raises t's mark of p to at least seq.
func (t Token) add(p int, seq uint64) Token {
	i, ok := slices.BinarySearchFunc(t, p, func(m Mark, p int) int { return m.Partition - p })
	if ok {
		t[i].Seq = max(t[i].Seq, seq)
		return t
	}
	return slices.Insert(t, i, Mark{p, seq})
}

// ParseToken reads a token's text form. Partitions may repeat (a client
// may join the tokens of several writes with commas): the highest sequence
// of each wins. Partitions must be below n.
func ParseToken(s string, n int) (Token, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > 32*maxPartitions {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadToken, len(s))
	}
	var t Token
	for part := range strings.SplitSeq(s, ",") {
		ps, ss, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("%w: %q is not partition:sequence", ErrBadToken, part)
		}
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || int(p) >= n {
			return nil, fmt.Errorf("%w: partition %q (the stream has %d)", ErrBadToken, ps, n)
		}
		seq, err := strconv.ParseUint(ss, 10, 64)
		if err != nil || seq == 0 {
			return nil, fmt.Errorf("%w: sequence %q", ErrBadToken, ss)
		}
		t = t.add(int(p), seq)
	}
	return t, nil
}
