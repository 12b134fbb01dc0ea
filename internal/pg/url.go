package pg

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxURLLength is the longest connection URL accepted anywhere (API contract).
const MaxURLLength = 2048

// URL is a parsed postgres:// connection URL. Its String method never shows
// the password; use Secret only to hand the URL to a driver.
type URL struct {
	u *url.URL
}

// ParseURL parses and checks a postgres:// or postgresql:// URL. Its errors
// never contain the password.
func ParseURL(s string) (URL, error) {
	if s == "" {
		return URL{}, errors.New("connection URL is empty")
	}
	if len(s) > MaxURLLength {
		return URL{}, fmt.Errorf("connection URL is %d characters, the limit is %d", len(s), MaxURLLength)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error echoes the input; never return it.
		return URL{}, errors.New("connection URL is not a valid URL (expected postgres://user:password@host:port/database)")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return URL{}, fmt.Errorf("connection URL scheme %q is not supported (expected postgres:// or postgresql://)", u.Scheme)
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return URL{}, errors.New("connection URL has no host (expected postgres://user:password@host:port/database)")
	}
	if u.Fragment != "" || u.Opaque != "" {
		return URL{}, errors.New("connection URL has unexpected parts (expected postgres://user:password@host:port/database)")
	}
	return URL{u: u}, nil
}

// MustParseURL is ParseURL for tests and constants; it panics on error.
func MustParseURL(s string) URL {
	u, err := ParseURL(s)
	if err != nil {
		panic(err)
	}
	return u
}

// IsZero reports whether u was never set.
func (u URL) IsZero() bool { return u.u == nil }

// String returns the URL with the password replaced by "xxxxx".
func (u URL) String() string {
	if u.u == nil {
		return ""
	}
	c := *u.u
	if c.User != nil {
		if _, ok := c.User.Password(); ok {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		}
	}
	q := c.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// Secret returns the full URL including the password. Only drivers get it.
func (u URL) Secret() string {
	if u.u == nil {
		return ""
	}
	return u.u.String()
}

// Password returns the password, if any.
func (u URL) Password() string {
	if u.u == nil {
		return ""
	}
	if u.u.User != nil {
		if p, ok := u.u.User.Password(); ok {
			return p
		}
	}
	return u.u.Query().Get("password")
}

// User returns the user name, if any.
func (u URL) User() string {
	if u.u == nil {
		return ""
	}
	if u.u.User == nil {
		return u.u.Query().Get("user")
	}
	return u.u.User.Username()
}

// Host returns host[:port] for messages.
func (u URL) Host() string {
	if u.u.Host != "" {
		return u.u.Host
	}
	return u.u.Query().Get("host")
}

// Database returns the database named in the URL ("" if none).
func (u URL) Database() string {
	if u.u == nil {
		return ""
	}
	if db := strings.TrimPrefix(u.u.Path, "/"); db != "" {
		return db
	}
	return u.u.Query().Get("dbname")
}

// WithDatabase returns a copy of u that connects to db.
func (u URL) WithDatabase(db string) URL {
	c := *u.u
	c.Path = "/" + db
	c.RawPath = ""
	q := c.Query()
	if q.Has("dbname") {
		q.Del("dbname")
		c.RawQuery = q.Encode()
	}
	return URL{u: &c}
}

// WithoutPassword returns u with the password removed: what a child tool
// receives as its --dbname argument (the password goes in its environment).
func (u URL) WithoutPassword() string {
	c := *u.u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	q := c.Query()
	if q.Has("password") {
		q.Del("password")
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// ChildEnv returns the environment entries that give a libpq child tool the
// password without putting it on its command line.
func (u URL) ChildEnv() []string {
	env := []string{"PGCONNECT_TIMEOUT=15"}
	if p := u.Password(); p != "" {
		env = append(env, "PGPASSWORD="+p)
	}
	return env
}

// Redact replaces every occurrence of the password of each URL in s.
// Use it on text that came from a child tool or a server.
func Redact(s string, urls ...URL) string {
	for _, u := range urls {
		if p := u.Password(); p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
			if esc := url.QueryEscape(p); esc != p {
				s = strings.ReplaceAll(s, esc, "xxxxx")
			}
			if esc := url.PathEscape(p); esc != p {
				s = strings.ReplaceAll(s, esc, "xxxxx")
			}
		}
	}
	return s
}
