package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Scope is a set of permissions (a bit set).
type Scope uint8

// The scopes a token may hold.
const (
	Ingest Scope = 1 << iota // post positions
	Read                     // queries, live feed, dashboard data
	Admin                    // zones, rules, deletes, pprof
	All    = Ingest | Read | Admin
)

// Limits of the token file format (see the package doc).
const (
	MaxTokenLen = 512
	MaxNameLen  = 64
	MaxTokens   = 4096
	MaxFileSize = 1 << 20
)

// String names the scopes, comma-separated ("ingest,read,admin").
func (s Scope) String() string {
	var b []byte
	for _, n := range scopeNames {
		if s&n.s != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, n.name...)
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

var scopeNames = [...]struct {
	name string
	s    Scope
}{{"ingest", Ingest}, {"read", Read}, {"admin", Admin}}

// Token is one entry of a token file.
type Token struct {
	Secret string // the bearer token itself; never log it
	Scope  Scope
	Name   string
}

// Parse reads a token file (see the package doc).
func Parse(b []byte) ([]Token, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("auth: token file is %d bytes, more than %d", len(b), MaxFileSize)
	}
	var toks []Token
	secrets := map[string]bool{}
	names := map[string]bool{}
	for n := 1; len(b) > 0; n++ {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		f := strings.Fields(string(line))
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) > 3 {
			return nil, fmt.Errorf("auth: token file line %d: %d fields, want <token> [scopes] [name]", n, len(f))
		}
		t := Token{Secret: f[0], Scope: All, Name: "line-" + strconv.Itoa(n)}
		if err := checkWord(f[0], MaxTokenLen); err != nil {
			return nil, fmt.Errorf("auth: token file line %d: token %w", n, err)
		}
		if len(f) > 1 {
			s, err := ParseScope(f[1])
			if err != nil {
				return nil, fmt.Errorf("auth: token file line %d: %w", n, err)
			}
			t.Scope = s
		}
		if len(f) > 2 {
			if err := checkWord(f[2], MaxNameLen); err != nil {
				return nil, fmt.Errorf("auth: token file line %d: name %w", n, err)
			}
			t.Name = f[2]
		}
		if secrets[t.Secret] {
			return nil, fmt.Errorf("auth: token file line %d: the same token appears twice", n)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("auth: token file line %d: name %q appears twice", n, t.Name)
		}
		if len(toks) == MaxTokens {
			return nil, fmt.Errorf("auth: token file holds more than %d tokens", MaxTokens)
		}
		secrets[t.Secret], names[t.Name] = true, true
		toks = append(toks, t)
	}
	if len(toks) == 0 {
		return nil, errors.New("auth: token file holds no token")
	}
	return toks, nil
}

// checkWord checks a token or name: 1..max visible ASCII bytes.
func checkWord(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is %d bytes, more than %d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("has byte %#02x at %d: want visible ASCII only", s[i], i)
		}
	}
	return nil
}

// ParseScope parses a comma-separated scope list: ingest, read, admin, all.
func ParseScope(s string) (Scope, error) {
	var out Scope
	for _, w := range strings.Split(s, ",") {
		switch w {
		case "ingest":
			out |= Ingest
		case "read":
			out |= Read
		case "admin":
			out |= Admin
		case "all":
			out |= All
		default:
			return 0, fmt.Errorf("unknown scope %q: want ingest, read, admin or all, comma-separated", w)
		}
	}
	return out, nil
}

// entry is a token as the keyring keeps it: its hash, not the token.
type entry struct {
	sum   [sha256.Size]byte
	scope Scope
	name  string
}

// Keyring holds the tokens a server accepts. The zero Keyring accepts
// none; a nil *Keyring means authentication is off (Lookup grants All).
type Keyring struct {
	tab  atomic.Pointer[[]entry]
	path string // for Reload; empty: Set only
}

// NewKeyring makes a keyring holding toks.
func NewKeyring(toks []Token) *Keyring {
	k := &Keyring{}
	k.Set(toks)
	return k
}

// LoadKeyring reads the token file at path; Reload reads it again.
func LoadKeyring(path string) (*Keyring, error) {
	k := &Keyring{path: path}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload re-reads the keyring's token file and swaps the table in; on an
// error the old table stays.
func (k *Keyring) Reload() error {
	if k.path == "" {
		return errors.New("auth: keyring has no token file to reload")
	}
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("auth: token file: %w", err)
	}
	if fi.Size() > MaxFileSize {
		return fmt.Errorf("auth: token file %s is %d bytes, more than %d", k.path, fi.Size(), MaxFileSize)
	}
	b, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("auth: token file: %w", err)
	}
	toks, err := Parse(b)
	if err != nil {
		return fmt.Errorf("%w (in %s)", err, k.path)
	}
	k.Set(toks)
	return nil
}

// Set replaces the tokens.
func (k *Keyring) Set(toks []Token) {
	tab := make([]entry, len(toks))
	for i, t := range toks {
		tab[i] = entry{sum: sha256.Sum256([]byte(t.Secret)), scope: t.Scope, name: t.Name}
	}
	k.tab.Store(&tab)
}

// Len is the number of tokens (0 for a nil keyring).
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	if t := k.tab.Load(); t != nil {
		return len(*t)
	}
	return 0
}

// Lookup returns the scopes and name of token; ok is false for an unknown
// token. It runs in time independent of which token matched (see the
// package doc). A nil keyring grants All.
func (k *Keyring) Lookup(token string) (scope Scope, name string, ok bool) {
	if k == nil {
		return All, "", true
	}
	return k.lookupSum(sha256.Sum256([]byte(token)))
}

func (k *Keyring) lookupSum(sum [sha256.Size]byte) (scope Scope, name string, ok bool) {
	t := k.tab.Load()
	if t == nil {
		return 0, "", false
	}
	found := 0
	for i := range *t {
		e := &(*t)[i]
		// No early exit: every entry is compared.
		eq := subtle.ConstantTimeCompare(sum[:], e.sum[:])
		scope |= Scope(subtle.ConstantTimeSelect(eq, int(e.scope), 0))
		if eq == 1 {
			name = e.name
		}
		found |= eq
	}
	return scope, name, found == 1
}

// Check reports whether token is known and holds every scope in want. It
// is the one call a non-HTTP protocol (RESP AUTH, device gateways) needs.
func (k *Keyring) Check(token string, want Scope) bool {
	s, _, ok := k.Lookup(token)
	return ok && s&want == want
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header, or "" when there is none.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(h[len(scheme):])
}
