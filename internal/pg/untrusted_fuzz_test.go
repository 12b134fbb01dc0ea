package pg

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// FuzzURLPolicy: ParseUntrusted never panics, and what it accepts has one
// TCP host that is a name or an allowed address, and only allow-listed
// parameters.
func FuzzURLPolicy(f *testing.F) {
	for _, s := range []string{
		"postgres://u:pw@db.example.com:5432/app?sslmode=require",
		"postgres://u@127.0.0.1/db", "postgres://u@[::ffff:127.0.0.1]/db", "postgres://u@h/db?host=/tmp",
		"postgres://u@h/db?passfile=/etc/passwd", "postgresql://h1,h2/db", "postgres://u@[64:ff9b::7f00:1]/x",
		"postgres://u@h/db?options=-c%20x%3Dy", "postgres://%2Ftmp/db", "postgres://u@h:0/db",
	} {
		f.Add(s)
	}
	policy := &NetPolicy{}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUntrusted(s, policy)
		if err != nil {
			return
		}
		raw, perr := url.Parse(s)
		if perr != nil {
			t.Fatalf("accepted an unparsable URL %q", s)
		}
		host := raw.Hostname()
		if host == "" || strings.ContainsAny(host, "/,%") || strings.Contains(raw.Host, ",") {
			t.Fatalf("accepted host %q of %q", raw.Host, s)
		}
		if a, err := netip.ParseAddr(host); err == nil && !policy.Allowed(a) {
			t.Fatalf("accepted denied address %s in %q", a, s)
		}
		for k := range raw.Query() {
			if _, ok := untrustedParams[k]; !ok {
				t.Fatalf("accepted parameter %q in %q", k, s)
			}
		}
		set := u.untrustedSettings()
		for _, k := range []string{"passfile", "servicefile", "sslcert", "sslkey", "sslpassword"} {
			if set[k] != "" {
				t.Fatalf("%s = %q for %q", k, set[k], s)
			}
		}
		if r := set["sslrootcert"]; r != "" && r != "system" {
			t.Fatalf("sslrootcert = %q for %q", r, s)
		}
		if _, err := ConnConfig(u); err != nil && strings.Contains(err.Error(), u.Password()) && u.Password() != "" && len(u.Password()) > 4 {
			t.Fatalf("config error echoes the password: %v", err)
		}
	})
}
