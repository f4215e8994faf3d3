package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Token // nil: an error containing err
		err  string
	}{
		{in: "s3cret\n", want: []Token{{"s3cret", All, "line-1"}}},
		{in: "  s3cret \r\n", want: []Token{{"s3cret", All, "line-1"}}},
		{in: "# devices\n\ndev-tok ingest truck-gw\nro read,ingest wall\nroot all\n", want: []Token{
			{"dev-tok", Ingest, "truck-gw"}, {"ro", Read | Ingest, "wall"}, {"root", All, "line-5"}}},
		{in: "a admin", want: []Token{{"a", Admin, "line-1"}}},
		{in: "", err: "no token"},
		{in: "# only a comment\n", err: "no token"},
		{in: "a read\na admin", err: "line 2: the same token"},
		{in: "a read x\nb read x", err: `line 2: name "x" appears twice`},
		{in: "a reed", err: `line 1: unknown scope "reed"`},
		{in: "a read,", err: `unknown scope ""`},
		{in: "a read n extra", err: "4 fields"},
		{in: "tok\xffen", err: "byte 0xff"},
		{in: strings.Repeat("x", MaxTokenLen+1), err: "more than 512"},
		{in: "a read " + strings.Repeat("n", MaxNameLen+1), err: "name is 65 bytes"},
	} {
		got, err := Parse([]byte(tc.in))
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("Parse(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Parse(%q)[%d] = %+v, want %+v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

func TestScopeString(t *testing.T) {
	for s, want := range map[Scope]string{0: "none", Ingest: "ingest", Read | Admin: "read,admin", All: "ingest,read,admin"} {
		if got := s.String(); got != want {
			t.Errorf("%d: %q, want %q", s, got, want)
		}
		if s != 0 {
			if back, err := ParseScope(want); err != nil || back != s {
				t.Errorf("ParseScope(%q) = %v, %v", want, back, err)
			}
		}
	}
}

func TestKeyringLookup(t *testing.T) {
	k := NewKeyring([]Token{{"dev", Ingest, "d"}, {"wall", Read, "w"}, {"root", All, "r"}})
	for _, tc := range []struct {
		tok   string
		scope Scope
		name  string
		ok    bool
	}{
		{"dev", Ingest, "d", true}, {"wall", Read, "w", true}, {"root", All, "r", true},
		{"", 0, "", false}, {"de", 0, "", false}, {"devv", 0, "", false}, {"ROOT", 0, "", false},
	} {
		s, n, ok := k.Lookup(tc.tok)
		if s != tc.scope || n != tc.name || ok != tc.ok {
			t.Errorf("Lookup(%q) = %v %q %v, want %v %q %v", tc.tok, s, n, ok, tc.scope, tc.name, tc.ok)
		}
	}
	if !k.Check("wall", Read) || k.Check("wall", Admin) || k.Check("nope", 0) || !k.Check("root", Read|Admin) {
		t.Fatal("Check")
	}
	var nilK *Keyring
	if !nilK.Check("anything", All) {
		t.Fatal("a nil keyring is auth off")
	}
	if (&Keyring{}).Check("x", 0) {
		t.Fatal("an empty keyring accepts nothing")
	}
}

func TestKeyringReload(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens")
	write := func(s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("old read\n")
	k, err := LoadKeyring(p)
	if err != nil || !k.Check("old", Read) {
		t.Fatal(err)
	}
	write("new admin\n")
	if err := k.Reload(); err != nil || k.Check("old", Read) || !k.Check("new", Admin) {
		t.Fatalf("after reload: %v", err)
	}
	write("new bogus\n")
	if err := k.Reload(); err == nil || !strings.Contains(err.Error(), p) || !k.Check("new", Admin) {
		t.Fatalf("a bad reload must keep the old table: %v", err)
	}
	if _, err := LoadKeyring(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"tok", "a ingest n\nb read,admin\n# c\n", "a all x\na all y", "\xff", "a b c d", "a read,,admin", "#\n\n\r\n t \t read"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		toks, err := Parse(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "auth: ") || len(err.Error()) > 512 {
				t.Fatalf("error %q", err)
			}
			return
		}
		k := NewKeyring(toks)
		seen := map[string]bool{}
		for _, tk := range toks {
			if tk.Secret == "" || tk.Scope == 0 || tk.Scope&^All != 0 || seen[tk.Secret] || checkWord(tk.Secret, MaxTokenLen) != nil {
				t.Fatalf("bad token %+v", tk)
			}
			seen[tk.Secret] = true
			if s, n, ok := k.Lookup(tk.Secret); !ok || s != tk.Scope || n != tk.Name {
				t.Fatalf("Lookup(%q) = %v %q %v", tk.Secret, s, n, ok)
			}
		}
		// Parsing is a function of the bytes: a re-encoding parses the same.
		var sb strings.Builder
		for _, tk := range toks {
			sb.WriteString(tk.Secret + " " + tk.Scope.String() + " " + tk.Name + "\n")
		}
		again, err := Parse([]byte(sb.String()))
		if err != nil || len(again) != len(toks) {
			t.Fatalf("re-encoded: %v", err)
		}
		for i := range again {
			if again[i] != toks[i] {
				t.Fatalf("re-encoded %+v != %+v", again[i], toks[i])
			}
		}
	})
}

func BenchmarkKeyringLookup(b *testing.B) {
	toks := make([]Token, 8)
	for i := range toks {
		toks[i] = Token{Secret: strings.Repeat(string(rune('a'+i)), 32), Scope: All, Name: string(rune('a' + i))}
	}
	k := NewKeyring(toks)
	b.ReportAllocs()
	for b.Loop() {
		if !k.Check(toks[5].Secret, Read) {
			b.Fatal("no")
		}
	}
}
