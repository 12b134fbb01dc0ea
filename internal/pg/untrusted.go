package pg

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// untrustedParams are the URL query parameters a job may set, with the
// values each accepts (nil: any value that passes its check below).
// Nothing here names a local file, a service, a socket or server options.
var untrustedParams = map[string][]string{
	"dbname":               nil,
	"user":                 nil,
	"password":             nil,
	"application_name":     nil,
	"connect_timeout":      nil,
	"sslmode":              {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
	"sslnegotiation":       {"postgres", "direct"},
	"sslsni":               {"0", "1"},
	"sslrootcert":          {"system"}, // the system CA store; never a file
	"channel_binding":      {"disable", "prefer", "require"},
	"target_session_attrs": {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"},
}

// UntrustedParams lists the query parameters ParseUntrusted accepts.
func UntrustedParams() []string {
	out := make([]string, 0, len(untrustedParams))
	for k := range untrustedParams {
		out = append(out, k)
	}
	return out
}

// ParseUntrusted parses a URL submitted by someone who holds only an API
// key. Beyond ParseURL it accepts one TCP host (a DNS name or an address
// the policy allows), a port, and the query parameters above. The URL it
// returns carries the policy: every connection made from it (pgx, pg_dump,
// pg_restore) resolves the host once, dials only allowed addresses, and
// ignores the environment, ~/.pgpass and service files. Errors name the
// offending part but never echo the password.
func ParseUntrusted(s string, policy *NetPolicy) (URL, error) {
	u, err := ParseURL(s)
	if err != nil {
		return URL{}, err
	}
	if policy == nil {
		policy = &NetPolicy{}
	}
	if strings.ContainsAny(s, "\x00\r\n") {
		return URL{}, errors.New("connection URL contains control characters")
	}
	raw := u.u
	// One host, in the authority part.
	if raw.Host == "" {
		return URL{}, errors.New("connection URL has no host: name it after the @ (postgres://user:password@host:5432/database); sockets and ?host= are not accepted")
	}
	if strings.Contains(raw.Host, ",") {
		return URL{}, errors.New("connection URL names several hosts: name exactly one")
	}
	host := raw.Hostname()
	if host == "" || strings.ContainsAny(host, "/%\\ ") {
		return URL{}, errors.New("connection URL host is not a host name or IP address")
	}
	if p := raw.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return URL{}, errors.New("connection URL port is not a number between 1 and 65535")
		}
	} else if strings.HasSuffix(raw.Host, ":") {
		return URL{}, errors.New("connection URL port is empty")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !policy.Allowed(a) {
			return URL{}, fmt.Errorf("connection URL host %s: %w", a, ErrAddressNotAllowed)
		}
	} else if !validHostName(host) {
		return URL{}, errors.New("connection URL host is not a valid DNS name or IP address")
	}
	if strings.Contains(strings.TrimPrefix(raw.Path, "/"), "/") {
		return URL{}, errors.New("connection URL database name contains '/'")
	}
	q, err := url.ParseQuery(raw.RawQuery)
	if err != nil {
		return URL{}, errors.New("connection URL query is malformed")
	}
	for k, vs := range q {
		allowed, ok := untrustedParams[k]
		if !ok {
			return URL{}, fmt.Errorf("connection URL parameter %q is not accepted by the job service (accepted: %s)", printable(k), strings.Join(sortedParams(), ", "))
		}
		if len(vs) != 1 {
			return URL{}, fmt.Errorf("connection URL parameter %q is given more than once", k)
		}
		v := vs[0]
		if allowed != nil && !contains(allowed, v) {
			return URL{}, fmt.Errorf("connection URL parameter %s must be one of %s", k, strings.Join(allowed, ", "))
		}
		switch k {
		case "connect_timeout":
			if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 300 {
				return URL{}, errors.New("connection URL parameter connect_timeout must be 0..300 seconds")
			}
		case "application_name", "user", "dbname":
			if len(v) > 63 || strings.ContainsAny(v, "\x00") {
				return URL{}, fmt.Errorf("connection URL parameter %s is too long", k)
			}
		}
	}
	// The raw text was checked above; percent-encoding must not bring a
	// NUL (a second startup parameter on the wire) or a line break back.
	for _, v := range []string{u.User(), u.Password(), u.Database()} {
		if strings.ContainsAny(v, "\x00\r\n") {
			return URL{}, errors.New("connection URL user, password or database name contains control characters")
		}
	}
	for _, vs := range q {
		for _, v := range vs {
			if strings.ContainsAny(v, "\x00\r\n") {
				return URL{}, errors.New("connection URL parameter value contains control characters")
			}
		}
	}
	u.policy = policy
	return u, nil
}

// Untrusted reports whether u came from ParseUntrusted.
func (u URL) Untrusted() bool { return u.policy != nil }

func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedParams() []string {
	ps := UntrustedParams()
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j] < ps[j-1]; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	return ps
}

// printable shortens and sanitises a parameter name for a message.
func printable(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}

// untrustedSettings is the complete libpq setting list of a policed URL:
// every key the environment, ~/.pgpass, a service file or ~/.postgresql
// could otherwise supply is given explicitly.
func (u URL) untrustedSettings() map[string]string {
	raw := u.u
	q := raw.Query()
	port := raw.Port()
	if port == "" {
		port = "5432"
	}
	sslmode := q.Get("sslmode")
	if sslmode == "" {
		sslmode = "prefer"
	}
	// Without a user name libpq would use the service's OS user name:
	// a job names its user or gets "postgres".
	user := u.User()
	if user == "" {
		user = "postgres"
	}
	db := u.Database()
	if db == "" {
		db = user
	}
	set := map[string]string{
		"host": raw.Hostname(), "port": port, "dbname": db, "user": user, "password": u.Password(),
		"sslmode": sslmode, "sslrootcert": q.Get("sslrootcert"),
		"passfile": "", "servicefile": "", "sslcert": "", "sslkey": "", "sslpassword": "",
		"application_name": q.Get("application_name"),
	}
	if set["application_name"] == "" {
		set["application_name"] = "postgres-seren-replicator"
	}
	for _, k := range []string{"connect_timeout", "sslnegotiation", "sslsni", "channel_binding", "target_session_attrs"} {
		if v := q.Get(k); v != "" {
			set[k] = v
		}
	}
	return set
}

// untrustedConnConfig builds the pgx config of a policed URL.
func untrustedConnConfig(u URL) (*pgx.ConnConfig, error) {
	set := u.untrustedSettings()
	var b strings.Builder
	for k, v := range set {
		b.WriteString(k)
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
		b.WriteString("' ")
	}
	cfg, err := pgx.ParseConfig(b.String())
	if err != nil {
		return nil, fmt.Errorf("connection settings of %s: %s", u, Redact(err.Error(), u))
	}
	// Only the settings above reach the server (no PGOPTIONS, PGTZ, …).
	// client_encoding at startup outranks a role's or database's default:
	// a predicate's text is read as the UTF-8 it was checked in.
	cfg.RuntimeParams = map[string]string{"application_name": set["application_name"], "client_encoding": "UTF8"}
	cfg.Password = set["password"]
	cfg.LookupFunc = u.policy.lookup
	cfg.DialFunc = u.policy.dial
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15e9
	}
	return cfg, nil
}
