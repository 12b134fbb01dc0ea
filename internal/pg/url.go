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
	// policy is set by ParseUntrusted: connections from this URL obey it.
	policy *NetPolicy
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
	changed := false
	for k := range q {
		if secretParam(k) {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// secrets returns the password and every other secret parameter value.
func (u URL) secrets() []string {
	if u.u == nil {
		return nil
	}
	var out []string
	if u.u.User != nil {
		if p, ok := u.u.User.Password(); ok && p != "" {
			out = append(out, p)
		}
	}
	for k, vs := range u.u.Query() {
		if secretParam(k) {
			for _, v := range vs {
				if v != "" {
					out = append(out, v)
				}
			}
		}
	}
	return out
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
	return URL{u: &c, policy: u.policy}
}

// Redact replaces the password and every other secret parameter value of
// each URL in s. Use it on text that came from a child tool or a server.
// A short secret is replaced only where a secret stands (after ':' in a
// URL's user info, after '=' in a parameter), so a password such as
// "postgres" does not turn the scheme, the user or a program name into
// xxxxx; a long one (12+ characters) is replaced wherever it appears.
func Redact(s string, urls ...URL) string {
	for _, u := range urls {
		for _, p := range u.secrets() {
			forms := []string{p}
			if esc := url.QueryEscape(p); esc != p {
				forms = append(forms, esc)
			}
			if esc := url.PathEscape(p); esc != p {
				forms = append(forms, esc)
			}
			for _, f := range forms {
				s = redactForm(s, f, len(p) >= 12)
			}
		}
	}
	return s
}

func redactForm(s, secret string, anywhere bool) string {
	if anywhere {
		return strings.ReplaceAll(s, secret, "xxxxx")
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, secret)
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		end := i + len(secret)
		before := byte(0)
		if i > 0 {
			before = rest[i-1]
		} else if b.Len() > 0 {
			before = b.String()[b.Len()-1]
		}
		after := byte(0)
		if end < len(rest) {
			after = rest[end]
		}
		if (before == ':' || before == '=') && strings.IndexByte("\x00@& \t\n\r'\";,)", after) >= 0 {
			b.WriteString(rest[:i])
			b.WriteString("xxxxx")
		} else {
			b.WriteString(rest[:end])
		}
		rest = rest[end:]
	}
}
