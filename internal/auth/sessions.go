package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// CookieName is the dashboard's session cookie.
const CookieName = "fleetd_session"

// Defaults of SessionOptions.
const (
	DefaultSessionTTL  = 12 * time.Hour
	DefaultMaxSessions = 10000
)

// SessionOptions configures Sessions.
type SessionOptions struct {
	Keyring     *Keyring      // required: sessions resolve their scopes here
	TTL         time.Duration // lifetime of a session (default DefaultSessionTTL)
	MaxSessions int           // bound on open sessions (default DefaultMaxSessions)
	Logger      *slog.Logger
	Now         func() time.Time // for tests; default time.Now
}

// session is one open session, keyed by the SHA-256 of its ID.
type session struct {
	token   [sha256.Size]byte // SHA-256 of the token it was opened with
	expires time.Time
}

// Sessions are the dashboard's logins: a token exchanged for a random
// session ID in an HttpOnly, SameSite=Strict cookie.
type Sessions struct {
	o  SessionOptions
	mu struct {
		sync.Mutex
		m     map[[sha256.Size]byte]session
		order [][sha256.Size]byte // insertion order, for eviction; may hold closed IDs
	}
	Evicted atomic.Int64 // sessions dropped because MaxSessions were open
}

// NewSessions makes an empty session table.
func NewSessions(o SessionOptions) *Sessions {
	if o.TTL <= 0 {
		o.TTL = DefaultSessionTTL
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Sessions{o: o}
	s.mu.m = map[[sha256.Size]byte]session{}
	return s
}

// Open starts a session for token, which must be known to the keyring; it
// returns the session ID to put in the cookie.
func (s *Sessions) Open(token string) (id string, ok bool) {
	sum := sha256.Sum256([]byte(token))
	if _, _, known := s.o.Keyring.lookupSum(sum); !known {
		return "", false
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	id = base64.RawURLEncoding.EncodeToString(raw[:])
	key := sha256.Sum256([]byte(id))
	now := s.o.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	for len(s.mu.m) >= s.o.MaxSessions && len(s.mu.order) > 0 {
		old := s.mu.order[0]
		s.mu.order = s.mu.order[1:]
		if _, live := s.mu.m[old]; live {
			delete(s.mu.m, old)
			s.Evicted.Add(1)
			s.o.Logger.Warn("auth: session table full; dropped the oldest session", "max_sessions", s.o.MaxSessions)
		}
	}
	s.mu.m[key] = session{token: sum, expires: now.Add(s.o.TTL)}
	s.mu.order = append(s.mu.order, key)
	return id, true
}

// expireLocked drops expired sessions from the front of the order (they
// expire in insertion order, all having the same TTL) and closed ones.
func (s *Sessions) expireLocked(now time.Time) {
	for len(s.mu.order) > 0 {
		k := s.mu.order[0]
		se, live := s.mu.m[k]
		if live && now.Before(se.expires) {
			break
		}
		delete(s.mu.m, k)
		s.mu.order = s.mu.order[1:]
	}
	if cap(s.mu.order) > 2*len(s.mu.order)+64 {
		s.mu.order = append([][sha256.Size]byte(nil), s.mu.order...)
	}
}

// Lookup resolves a session ID to the scopes of its token now.
func (s *Sessions) Lookup(id string) (scope Scope, name string, ok bool) {
	if id == "" {
		return 0, "", false
	}
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	se, live := s.mu.m[key]
	s.mu.Unlock()
	if !live || !s.o.Now().Before(se.expires) {
		return 0, "", false
	}
	return s.o.Keyring.lookupSum(se.token)
}

// Close ends a session; an unknown ID is ignored.
func (s *Sessions) Close(id string) {
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	delete(s.mu.m, key)
	s.mu.Unlock()
}

// Len is the number of open (possibly expired, not yet swept) sessions.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.m)
}

// TTL is the lifetime of a session.
func (s *Sessions) TTL() time.Duration { return s.o.TTL }

// Cookie is the Set-Cookie for a new session: HttpOnly, SameSite=Strict,
// Path=/, with Max-Age, and Secure when the request came over TLS.
func (s *Sessions) Cookie(r *http.Request, id string) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: id, Path: "/",
		MaxAge: int(s.o.TTL / time.Second), HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
}

// ClearCookie is the Set-Cookie that deletes the session cookie.
func ClearCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// SessionID returns the request's session cookie value, or "".
func SessionID(r *http.Request) string {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}
