package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	k := NewKeyring([]Token{{"wall", Read, "w"}, {"root", All, "r"}})
	now := time.Unix(1e9, 0)
	s := NewSessions(SessionOptions{Keyring: k, TTL: time.Hour, MaxSessions: 3, Now: func() time.Time { return now }})
	if _, ok := s.Open("nope"); ok {
		t.Fatal("opened a session for an unknown token")
	}
	id, ok := s.Open("wall")
	if !ok || len(id) != 43 {
		t.Fatalf("%q %v", id, ok)
	}
	if sc, n, ok := s.Lookup(id); !ok || sc != Read || n != "w" {
		t.Fatalf("%v %q %v", sc, n, ok)
	}
	if _, _, ok := s.Lookup(id + "x"); ok {
		t.Fatal("unknown id")
	}
	// Revoking the token ends its sessions.
	k.Set([]Token{{"root", All, "r"}})
	if _, _, ok := s.Lookup(id); ok {
		t.Fatal("session outlived its token")
	}
	k.Set([]Token{{"wall", Read | Admin, "w"}, {"root", All, "r"}})
	if sc, _, _ := s.Lookup(id); sc != Read|Admin {
		t.Fatalf("scopes follow the token file: %v", sc)
	}
	// Expiry.
	now = now.Add(time.Hour)
	if _, _, ok := s.Lookup(id); ok {
		t.Fatal("expired session served")
	}
	// Bound: the oldest is evicted.
	var ids []string
	for range 4 {
		id, _ := s.Open("root")
		ids = append(ids, id)
	}
	if s.Len() != 3 || s.Evicted.Load() != 1 {
		t.Fatalf("len %d evicted %d", s.Len(), s.Evicted.Load())
	}
	if _, _, ok := s.Lookup(ids[0]); ok {
		t.Fatal("evicted session served")
	}
	s.Close(ids[3])
	if _, _, ok := s.Lookup(ids[3]); ok {
		t.Fatal("closed session served")
	}
	if _, _, ok := s.Lookup(ids[2]); !ok {
		t.Fatal("live session lost")
	}
}

func TestSessionCookie(t *testing.T) {
	s := NewSessions(SessionOptions{Keyring: NewKeyring([]Token{{"a", All, "a"}})})
	r := httptest.NewRequest("POST", "/v1/login", nil)
	c := s.Cookie(r, "id")
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.MaxAge != int(DefaultSessionTTL/time.Second) || c.Path != "/" {
		t.Fatalf("%+v", c)
	}
	r = httptest.NewRequest("POST", "https://x/v1/login", nil) // sets r.TLS
	if !s.Cookie(r, "id").Secure || !ClearCookie(r).Secure || ClearCookie(r).MaxAge >= 0 {
		t.Fatal("Secure under TLS")
	}
	r.AddCookie(&http.Cookie{Name: CookieName, Value: "abc"})
	if SessionID(r) != "abc" {
		t.Fatal("SessionID")
	}
}
