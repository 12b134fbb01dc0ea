package pg

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// libpqEnv maps connection parameters to the libpq environment variables
// that carry them to a child tool.
var libpqEnv = map[string]string{
	"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
	"user": "PGUSER", "password": "PGPASSWORD", "passfile": "PGPASSFILE",
	"channel_binding": "PGCHANNELBINDING", "service": "PGSERVICE", "servicefile": "PGSERVICEFILE",
	"options": "PGOPTIONS", "application_name": "PGAPPNAME", "sslmode": "PGSSLMODE",
	"sslnegotiation": "PGSSLNEGOTIATION", "sslcompression": "PGSSLCOMPRESSION",
	"sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcertmode": "PGSSLCERTMODE",
	"sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL", "sslcrldir": "PGSSLCRLDIR",
	"sslsni": "PGSSLSNI", "requirepeer": "PGREQUIREPEER",
	"ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION", "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
	"gssencmode": "PGGSSENCMODE", "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB",
	"gssdelegation": "PGGSSDELEGATION", "connect_timeout": "PGCONNECT_TIMEOUT",
	"client_encoding": "PGCLIENTENCODING", "target_session_attrs": "PGTARGETSESSIONATTRS",
	"load_balance_hosts": "PGLOADBALANCEHOSTS", "require_auth": "PGREQUIREAUTH",
	"min_protocol_version": "PGMINPROTOCOLVERSION", "max_protocol_version": "PGMAXPROTOCOLVERSION",
}

// noFile is a path that does not exist: libpq skips a missing
// ~/.postgresql client certificate, and finds no pgpass or service file.
const noFile = "/nonexistent/postgres-seren-replicator"

// ChildConn returns how a libpq child tool (pg_dump, pg_restore) connects
// to u without the URL or any secret on its command line: env holds the
// connection parameters (PGHOST, PGPASSWORD, …) and conninfo, for
// --dbname, is a keyword/value string naming the database plus the few
// parameters libpq has no environment variable for (never a secret).
//
// For a URL from ParseUntrusted the host is resolved here through the
// policy and the tool is pinned to the checked address (PGHOSTADDR, with
// PGHOST kept for TLS), and no password, service or certificate file can
// be consulted.
//
// A trusted URL's secret that libpq has no environment variable for
// (sslpassword) is returned in hidden, as the lines of a service file the
// caller writes privately and names with PGSERVICEFILE/PGSERVICE.
func (u URL) ChildConn(ctx context.Context) (env []string, conninfo string, err error) {
	env, conninfo, _, err = u.childConn(ctx)
	return env, conninfo, err
}

// ChildConnHidden is ChildConn plus the secrets that need a service file
// (key=value lines; empty when there are none).
func (u URL) ChildConnHidden(ctx context.Context) (env []string, conninfo string, hidden []string, err error) {
	return u.childConn(ctx)
}

func (u URL) childConn(ctx context.Context) (env []string, conninfo string, hidden []string, err error) {
	set := map[string]string{}
	if u.policy != nil {
		set = u.untrustedSettings()
		addrs, err := u.policy.Resolve(ctx, set["host"])
		if err != nil {
			return nil, "", nil, fmt.Errorf("resolve %s: %w", set["host"], err)
		}
		set["hostaddr"] = addrs[0].String()
		for _, k := range []string{"passfile", "servicefile", "sslcert", "sslkey"} {
			set[k] = noFile
		}
		delete(set, "sslpassword")
		// No GSSAPI: the service's Kerberos identity is not the job's.
		set["gssencmode"] = "disable"
		set["require_auth"] = "password,md5,scram-sha-256,none" // libpq 16+; older ignores it
		if set["sslrootcert"] == "" {
			set["sslrootcert"] = noFile
			if strings.HasPrefix(set["sslmode"], "verify-") {
				set["sslrootcert"] = "system"
			}
		}
	} else {
		q := u.u.Query()
		for k, vs := range q {
			if len(vs) > 0 {
				set[k] = vs[len(vs)-1]
			}
		}
		if h := u.u.Hostname(); u.u.Host != "" {
			set["host"] = h
			if strings.Contains(u.u.Host, ",") {
				// Several hosts: libpq takes the list as written.
				set["host"], set["port"] = splitHosts(u.u.Host)
			} else if p := u.u.Port(); p != "" {
				set["port"] = p
			}
		}
		if db := strings.TrimPrefix(u.u.Path, "/"); db != "" {
			set["dbname"] = db
		}
		if u.u.User != nil {
			set["user"] = u.u.User.Username()
			if p, ok := u.u.User.Password(); ok {
				set["password"] = p
			}
		}
	}
	env = []string{"PGCONNECT_TIMEOUT=15"}
	if u.policy != nil {
		env = append(env, "PGSYSCONFDIR="+noFile,
			// and no ticket cache or client keytab for a libpq older than 16
			"KRB5CCNAME=FILE:"+noFile, "KRB5_CLIENT_KTNAME=FILE:"+noFile)
	}
	var extra []string
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := set[k]
		if name, ok := libpqEnv[k]; ok {
			env = append(env, name+"="+v)
			continue
		}
		if secretParam(k) {
			// No environment variable and too secret for argv.
			hidden = append(hidden, k+"="+v)
			continue
		}
		extra = append(extra, k+"="+quoteConninfo(v))
	}
	db := set["dbname"]
	if db == "" {
		db = set["user"]
	}
	conninfo = strings.Join(append([]string{"dbname=" + quoteConninfo(db)}, extra...), " ")
	return env, conninfo, hidden, nil
}

func splitHosts(hostport string) (hosts, ports string) {
	var hs, ps []string
	for _, hp := range strings.Split(hostport, ",") {
		h, p := hp, ""
		if i := strings.LastIndex(hp, ":"); i >= 0 && !strings.HasSuffix(hp, "]") {
			h, p = hp[:i], hp[i+1:]
		}
		hs = append(hs, strings.Trim(h, "[]"))
		ps = append(ps, p)
	}
	return strings.Join(hs, ","), strings.Join(ps, ",")
}

func quoteConninfo(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// secretParam reports whether a connection parameter holds a secret.
func secretParam(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.Contains(k, "token") ||
		k == "sslkey" || strings.HasSuffix(k, "_key") || strings.HasSuffix(k, "key")
}
