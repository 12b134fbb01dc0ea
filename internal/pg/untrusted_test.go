package pg

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestNetPolicyDefaultDeniesEveryFormOfALocalAddress(t *testing.T) {
	p, err := ParseNetPolicy("")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"127.0.0.1", "127.1.2.3", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1",
		"169.254.169.254", "224.0.0.1", "255.255.255.255", "240.0.0.1",
		"::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::ffff:10.0.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a9fe:a9fe::", "2001::1",
	} {
		if p.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s allowed by the default policy", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"} {
		if !p.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s denied by the default policy", s)
		}
	}
}

func TestNetPolicyAllowOpensARange(t *testing.T) {
	p, err := ParseNetPolicy("127.0.0.0/8, 10.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "10.0.0.5"} {
		if !p.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s denied with 127.0.0.0/8,10.0.0.5 allowed", s)
		}
	}
	for _, s := range []string{"10.0.0.6", "169.254.169.254", "::1"} {
		if p.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s allowed with only 127.0.0.0/8,10.0.0.5 open", s)
		}
	}
	if _, err := ParseNetPolicy("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR was accepted")
	}
}

func TestParseUntrustedRefusesWhatTheServiceMustNotHonour(t *testing.T) {
	p := &NetPolicy{}
	for name, s := range map[string]string{
		"loopback":        "postgres://u:pw@127.0.0.1:5432/db",
		"mapped v6":       "postgres://u:pw@[::ffff:127.0.0.1]:5432/db",
		"metadata":        "postgres://u:pw@169.254.169.254/db",
		"unix socket":     "postgres://u:pw@h/db?host=/tmp",
		"empty host":      "postgres://u:pw@/db?host=/var/run/postgresql",
		"hostaddr":        "postgres://u:pw@h/db?hostaddr=127.0.0.1",
		"port param":      "postgres://u:pw@h/db?port=5432",
		"passfile":        "postgres://u@h/db?passfile=/etc/passwd",
		"service":         "postgres://u@h/db?service=prod",
		"servicefile":     "postgres://u@h/db?servicefile=/root/.pg_service.conf",
		"sslrootcert":     "postgres://u@h/db?sslrootcert=/etc/shadow",
		"sslkey":          "postgres://u@h/db?sslkey=/root/.ssh/id_rsa",
		"sslpassword":     "postgres://u@h/db?sslpassword=S3ntinel",
		"options":         "postgres://u@h/db?options=-c%20standard_conforming_strings%3Doff",
		"two hosts":       "postgres://u@h1,h2/db",
		"bad sslmode":     "postgres://u@h/db?sslmode=whatever",
		"repeated":        "postgres://u@h/db?sslmode=disable&sslmode=require",
		"zone":            "postgres://u@[fe80::1%25eth0]/db",
		"bad name":        "postgres://u@h$x/db",
		"slash in dbname": "postgres://u@h/db/x",
	} {
		if _, err := ParseUntrusted(s, p); err == nil {
			t.Errorf("%s: %s accepted", name, s)
		} else if strings.Contains(err.Error(), "S3ntinel") || strings.Contains(err.Error(), ":pw@") {
			t.Errorf("%s: error echoes a secret: %v", name, err)
		}
	}
	for _, s := range []string{
		"postgres://u:pw@db.example.com:5432/app?sslmode=verify-full&sslrootcert=system",
		"postgresql://u@8.8.8.8/app?application_name=x&connect_timeout=10&target_session_attrs=read-write",
		"postgres://h/db",
	} {
		if _, err := ParseUntrusted(s, p); err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
}

// TestUntrustedConnectionIgnoresTheEnvironment: the service's own
// environment and files must not fill in what a job's URL left out.
func TestUntrustedConnectionIgnoresTheEnvironment(t *testing.T) {
	t.Setenv("PGPASSWORD", "service-secret")
	t.Setenv("PGOPTIONS", "-c statement_timeout=1")
	t.Setenv("PGSSLROOTCERT", "/etc/hostname")
	u, err := ParseUntrusted("postgres://u@db.example.com/app", &NetPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ConnConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "" {
		t.Errorf("password taken from the environment")
	}
	if _, ok := cfg.RuntimeParams["options"]; ok {
		t.Errorf("options taken from the environment")
	}
	if cfg.TLSConfig != nil && cfg.TLSConfig.RootCAs != nil {
		t.Errorf("root certificate taken from the environment")
	}
	// Dialling checks the address itself, whatever lookup said.
	if _, err := cfg.DialFunc(context.Background(), "tcp", "127.0.0.1:5432"); !errors.Is(err, ErrAddressNotAllowed) {
		t.Errorf("dial 127.0.0.1: %v", err)
	}
	if _, err := cfg.DialFunc(context.Background(), "unix", "/tmp/.s.PGSQL.5432"); !errors.Is(err, ErrAddressNotAllowed) {
		t.Errorf("dial unix socket: %v", err)
	}
	if _, err := cfg.DialFunc(context.Background(), "tcp", "localhost:5432"); !errors.Is(err, ErrAddressNotAllowed) {
		t.Errorf("dial a name: %v", err)
	}
	if _, err := cfg.LookupFunc(context.Background(), "localhost"); !errors.Is(err, ErrAddressNotAllowed) {
		t.Errorf("lookup localhost: %v", err)
	}
}

func TestChildConnPutsNoURLOrSecretInArgv(t *testing.T) {
	const pw, sslpw = "Pw-Sentinel-1", "SslPw-Sentinel-2"
	u := MustParseURL("postgres://alice:" + pw + "@db.example.com:6432/shop?sslmode=require&sslpassword=" + sslpw + "&keepalives=1")
	env, conninfo, err := u.ChildConn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(conninfo, pw) || strings.Contains(conninfo, sslpw) || strings.Contains(conninfo, "://") {
		t.Errorf("conninfo %q carries a URL or secret", conninfo)
	}
	want := []string{"PGHOST=db.example.com", "PGPORT=6432", "PGUSER=alice", "PGPASSWORD=" + pw, "PGDATABASE=shop", "PGSSLMODE=require"}
	for _, w := range want {
		if !contains(env, w) {
			t.Errorf("env lacks %s: %v", w, env)
		}
	}
	if conninfo != "dbname='shop' keepalives='1'" {
		t.Errorf("conninfo = %q", conninfo)
	}

	p, _ := ParseNetPolicy("127.0.0.0/8")
	uu, err := ParseUntrusted("postgres://bob:"+pw+"@localhost:5432/db", p)
	if err != nil {
		t.Fatal(err)
	}
	env, _, err = uu.ChildConn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"PGHOST=localhost", "PGHOSTADDR=127.0.0.1", "PGPASSFILE=" + noFile, "PGSERVICEFILE=" + noFile, "PGSSLCERT=" + noFile} {
		if !contains(env, w) {
			t.Errorf("untrusted env lacks %s: %v", w, env)
		}
	}
	denied, _ := ParseUntrusted("postgres://bob@localhost/db", &NetPolicy{})
	if _, _, err := denied.ChildConn(context.Background()); !errors.Is(err, ErrAddressNotAllowed) {
		t.Errorf("child tool to localhost under the default policy: %v", err)
	}
}

func TestRedactReplacesOnlyTheSecret(t *testing.T) {
	u := MustParseURL("postgres://postgres:postgres@db.example.com/postgres?sslpassword=keypass")
	line := "postgres-seren-replicator validate: from " + u.Secret() + " failed"
	got := Redact(line, u)
	want := "postgres-seren-replicator validate: from postgres://postgres:xxxxx@db.example.com/postgres?sslpassword=xxxxx failed"
	if got != want {
		t.Errorf("Redact:\n got %s\nwant %s", got, want)
	}
	if s := u.String(); strings.Contains(s, "keypass") || !strings.HasPrefix(s, "postgres://postgres:xxxxx@") {
		t.Errorf("String() = %s", s)
	}
	long := MustParseURL("postgres://u:" + url.PathEscape("a long pass/word!") + "@h/db")
	if got := Redact("server said a long pass/word! here", long); strings.Contains(got, "pass/word") {
		t.Errorf("long password not redacted: %s", got)
	}
}

// TestUntrustedConnectErrorsDoNotTellPortsApart: a closed port and a
// refused address read alike to the submitter; the detail is kept apart.
func TestUntrustedConnectErrorsDoNotTellPortsApart(t *testing.T) {
	p, _ := ParseNetPolicy("127.0.0.0/8")
	u, err := ParseUntrusted("postgres://u:pw@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Connect(context.Background(), u, "source")
	var hidden *HiddenError
	if !errors.As(err, &hidden) {
		t.Fatalf("Connect to a closed port: %v, want a HiddenError", err)
	}
	if strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "could not connect") {
		t.Errorf("submitter sees %q", err)
	}
	if !strings.Contains(hidden.Detail, "refused") {
		t.Errorf("detail %q lacks the reason", hidden.Detail)
	}
}

// Attack: the IPv4-translated form ::ffff:0:a.b.c.d (RFC 2765/6145 SIIT,
// ::ffff:0:0/96) of a loopback or metadata address passed the policy
// (only ::ffff:a.b.c.d, ::a.b.c.d, NAT64 and 6to4 were unwrapped). Where a
// stateless translator routes it, it reaches the IPv4 address it embeds.
func TestNetPolicyDeniesIPv4TranslatedForms(t *testing.T) {
	p, _ := ParseNetPolicy("")
	for _, s := range []string{"::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe", "::ffff:0:a00:1", "::ffff:0:c0a8:101"} {
		if p.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("%s (IPv4-translated) allowed by the default policy", s)
		}
	}
	if !p.Allowed(netip.MustParseAddr("::ffff:0:808:808")) {
		t.Error("::ffff:0:808:808 (8.8.8.8 translated) denied")
	}
	if _, err := ParseUntrusted("postgres://u:pw@[::ffff:0:7f00:1]:5432/db", p); !errors.Is(err, ErrAddressNotAllowed) {
		t.Errorf("ParseUntrusted of an IPv4-translated loopback: err = %v", err)
	}
	q, _ := ParseNetPolicy("127.0.0.0/8")
	if !q.Allowed(netip.MustParseAddr("::ffff:0:7f00:1")) {
		t.Error("an opened IPv4 range does not open its translated form")
	}
}

// Attack: ParseUntrusted refused NUL, CR and LF only in the raw text, so a
// percent-encoded one (%00) reached the decoded database, user or password:
// "db\x00options\x00-c …" is a second startup parameter on the wire, and a
// line break a second line in a child tool's service file. The driver
// refuses the NUL today; the policy must not depend on that.
func TestParseUntrustedRefusesEncodedControlCharacters(t *testing.T) {
	p, _ := ParseNetPolicy("")
	for _, s := range []string{
		"postgres://u:pw@db.example.com/db%00options%00-c%20log_statement%3Dall",
		"postgres://u%00options%00-cx:pw@db.example.com/db",
		"postgres://u:p%00w@db.example.com/db",
		"postgres://u:pw@db.example.com/db%0Ax",
		"postgres://u:pw@db.example.com/db?password=a%00b",
		"postgres://u:pw@db.example.com/db?application_name=a%0Ab",
	} {
		if _, err := ParseUntrusted(s, p); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

// Attack: pg_dump/pg_restore for a job kept libpq's Kerberos defaults
// (gssencmode=prefer, GSSAPI authentication allowed, the service's
// KRB5CCNAME ticket cache): a job naming a server in the service's realm
// made the child tool authenticate to it with the SERVICE's Kerberos
// identity. A job's child tool must not offer or use GSSAPI.
func TestUntrustedChildToolLendsNoKerberosIdentity(t *testing.T) {
	t.Setenv("KRB5CCNAME", "FILE:/tmp/krb5cc_service")
	p, _ := ParseNetPolicy("127.0.0.0/8")
	u, err := ParseUntrusted("postgres://bob:pw@localhost:5432/db", p)
	if err != nil {
		t.Fatal(err)
	}
	env, _, err := u.ChildConn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"PGGSSENCMODE=disable", "PGREQUIREAUTH=password,md5,scram-sha-256,none", "KRB5CCNAME=FILE:" + noFile} {
		if !contains(env, w) {
			t.Errorf("untrusted child env lacks %s: %v", w, env)
		}
	}
}

// Attack: a role may set its own defaults (ALTER ROLE me SET
// client_encoding = 'SJIS'; ALTER ROLE me SET backslash_quote = on). The
// connection sent no client_encoding, so the server read the predicate
// text as SJIS: the re-emitted literal E'Δ\\' (bytes CE 94 5C 5C 27) became
// a katakana, a kanji (94 5C) and an escaped quote, the literal ran on into
// the next one, and the rest of a checked predicate — "); COMMIT; COPY …
// TO PROGRAM …; --" — ran as SQL (seen against PostgreSQL 15). A client
// encoding sent at startup outranks every role and database default.
func TestConnectionsPinClientEncodingUTF8(t *testing.T) {
	p, _ := ParseNetPolicy("")
	u, err := ParseUntrusted("postgres://u:pw@db.example.com/app", p)
	if err != nil {
		t.Fatal(err)
	}
	for name, url := range map[string]URL{"job": u, "cli": MustParseURL("postgres://u:pw@db.example.com/app")} {
		cfg, err := ConnConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.RuntimeParams["client_encoding"]; got != "UTF8" {
			t.Errorf("%s connection: client_encoding = %q, want UTF8 sent at startup", name, got)
		}
		pc, err := PoolConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		if got := pc.ConnConfig.RuntimeParams["client_encoding"]; got != "UTF8" {
			t.Errorf("%s pool: client_encoding = %q, want UTF8 sent at startup", name, got)
		}
	}
}
