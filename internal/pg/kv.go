package pg

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// IsKeyValue reports whether s looks like a libpq key/value connection
// string (host=… dbname=…) rather than a URL.
func IsKeyValue(s string) bool {
	s = strings.TrimSpace(s)
	return s != "" && !strings.Contains(s, "://") && strings.Contains(s, "=")
}

// ParseKeyValue parses a libpq key/value connection string ("host=db
// port=5432 dbname=app user=u password='p w'") into a URL, with the same
// checks as ParseURL. Values may be single-quoted with \' and \\ escapes.
// Like ParseURL, its errors never echo the input (it may hold a password).
func ParseKeyValue(s string) (URL, error) {
	if len(s) > MaxURLLength {
		return URL{}, fmt.Errorf("connection string is %d characters, the limit is %d", len(s), MaxURLLength)
	}
	kv, err := splitKeyValue(s)
	if err != nil {
		return URL{}, err
	}
	u := &url.URL{Scheme: "postgres", Path: "/"}
	q := url.Values{}
	host, port := "", ""
	user, password, havePassword := "", "", false
	for _, p := range kv {
		switch p[0] {
		case "host":
			host = p[1]
		case "port":
			port = p[1]
		case "dbname":
			u.Path = "/" + p[1]
		case "user":
			user = p[1]
		case "password":
			password, havePassword = p[1], true
		default:
			q.Set(p[0], p[1])
		}
	}
	switch {
	case strings.HasPrefix(host, "/") || strings.Contains(host, ","):
		q.Set("host", host) // a socket directory or several hosts
		if port != "" {
			q.Set("port", port)
		}
	case host != "" && port != "":
		u.Host = net.JoinHostPort(host, port)
	default:
		u.Host = host
	}
	if user != "" || havePassword {
		if havePassword {
			u.User = url.UserPassword(user, password)
		} else {
			u.User = url.User(user)
		}
	}
	u.RawQuery = q.Encode()
	return ParseURL(u.String())
}

// splitKeyValue splits a key/value string into (key, value) pairs.
func splitKeyValue(s string) ([][2]string, error) {
	bad := errors.New("connection string is not valid key=value pairs (expected host=… port=… dbname=… user=…)")
	var out [][2]string
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
		if i == len(s) {
			return out, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq <= 0 {
			return nil, bad
		}
		key := strings.TrimSpace(s[i : i+eq])
		if key == "" || strings.ContainsAny(key, " '\\") {
			return nil, bad
		}
		i += eq + 1
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					val.WriteByte(s[i])
					i++
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return nil, bad
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		out = append(out, [2]string{key, val.String()})
	}
}
