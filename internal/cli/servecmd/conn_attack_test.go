package servecmd_test

// The connection attack suite of issue 8: a key holder names databases on
// the serve host (loopback, a unix socket, localhost, a mapped IPv6
// address, a name resolving to loopback), files or settings through URL
// parameters, a drop through a denied host, and a secret parameter that
// must not reach a log. Against a real serve with the default network
// policy and real clusters; each attack is refused at submit (4xx) or its
// job fails, and nothing is read, written or dropped.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func clusterURL(c *pgtest.Cluster, host, db, query string) string {
	port := strings.TrimPrefix(c.URL(db).Host(), "127.0.0.1:")
	u := fmt.Sprintf("postgres://%s:%s@%s/%s", c.User, url.PathEscape(c.Password), net.JoinHostPort(host, port), db)
	if query != "" {
		u += "?" + query
	}
	return u
}

func dbExists(t *testing.T, c *pgtest.Cluster, db string) bool {
	t.Helper()
	conn := c.Conn(t, "postgres")
	defer conn.Close(context.Background())
	var ok bool
	if err := conn.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// loopbackName is a host name other than localhost that resolves only to
// loopback here (/etc/hosts), or "".
func loopbackName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || h == "localhost" {
		return ""
	}
	addrs, err := net.LookupHost(h)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() {
			return ""
		}
	}
	return h
}

func TestConnectionAttacksAreRefused(t *testing.T) {
	const sslSentinel = "Ssl-Sentinel-5e2d"
	victim := pgtest.New(t, pgtest.Options{})
	theirs := pgtest.New(t, pgtest.Options{})
	fresh := pgtest.New(t, pgtest.Options{}) // the copy attacks' target: empty
	vdb, _ := victim.NewDB(t, theirs, fresh)
	victim.Exec(t, vdb, "CREATE TABLE secrets (id int PRIMARY KEY, v text); INSERT INTO secrets SELECT g, 'secret ' || g FROM generate_series(1, 20) g")
	// The attacker's own target database, for the drop attack.
	theirs.Exec(t, "postgres", "CREATE DATABASE "+vdb)
	theirs.Exec(t, vdb, "CREATE TABLE precious (id int); INSERT INTO precious SELECT generate_series(1, 9)")

	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "attacker")
	srv := startServe(t, dataDir, "--check-interval", "500ms", "--allow-networks=")
	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}
	sink := clusterURL(fresh, "127.0.0.1", "postgres", "sslmode=disable")
	sinkByName := clusterURL(fresh, "localhost", "postgres", "sslmode=disable")

	type attack struct {
		name, source, target string
		drop                 bool
	}
	attacks := []attack{
		{name: "loopback", source: clusterURL(victim, "127.0.0.1", "postgres", "sslmode=disable"), target: sink},
		{name: "unix socket", source: fmt.Sprintf("postgres://%s:%s@/postgres?host=%s&port=%s", victim.User, url.PathEscape(victim.Password), victim.Dir, strings.TrimPrefix(victim.URL("x").Host(), "127.0.0.1:")), target: sink},
		{name: "unix socket in host param", source: fmt.Sprintf("postgres://%s:%s@h/postgres?host=%s&port=%s", victim.User, url.PathEscape(victim.Password), victim.Dir, strings.TrimPrefix(victim.URL("x").Host(), "127.0.0.1:")), target: sinkByName},
		{name: "localhost", source: clusterURL(victim, "localhost", "postgres", "sslmode=disable"), target: sinkByName},
		{name: "mapped IPv6", source: clusterURL(victim, "::ffff:127.0.0.1", "postgres", "sslmode=disable"), target: clusterURL(fresh, "::ffff:127.0.0.1", "postgres", "sslmode=disable")},
		{name: "passfile", source: clusterURL(victim, "localhost", "postgres", "sslmode=disable&passfile=/etc/passwd"), target: sinkByName},
		{name: "service", source: clusterURL(victim, "localhost", "postgres", "service=victim&servicefile=/etc/passwd"), target: sinkByName},
		{name: "sslrootcert", source: clusterURL(victim, "localhost", "postgres", "sslmode=require&sslrootcert=/etc/passwd"), target: sinkByName},
		{name: "options", source: clusterURL(victim, "localhost", "postgres", "sslmode=disable&options=-c%20default_transaction_read_only%3Doff"), target: sinkByName},
		{name: "drop through a denied host", source: clusterURL(victim, "localhost", "postgres", "sslmode=disable"), target: clusterURL(theirs, "localhost", "postgres", "sslmode=disable"), drop: true},
		{name: "sslpassword", source: clusterURL(victim, "localhost", "postgres", "sslmode=disable&sslpassword="+sslSentinel), target: sinkByName},
	}
	if h := loopbackName(); h != "" {
		attacks = append(attacks, attack{name: "a name resolving to loopback", source: clusterURL(victim, h, "postgres", "sslmode=disable"), target: clusterURL(fresh, h, "postgres", "sslmode=disable")})
	} else {
		t.Log("no host name other than localhost resolves to loopback here: that case is covered by localhost")
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			resp, err := c.Submit(ctx, jobs.Request{
				SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandInit,
				SourceURL: a.source, TargetURL: a.target,
				Filter:  jobs.Filter{IncludeDatabases: []string{vdb}},
				Options: jobs.Options{NoSync: true, DropExisting: a.drop},
			}, "")
			var apiErr *apiclient.Error
			switch {
			case errors.As(err, &apiErr) && apiErr.StatusCode >= 400 && apiErr.StatusCode < 500:
				t.Logf("refused: %d %s: %s", apiErr.StatusCode, apiErr.Field, apiErr.Message)
				if apiErr.Field != "source_url" && apiErr.Field != "target_url" {
					t.Errorf("400 names field %q, want source_url or target_url (%s)", apiErr.Field, apiErr.Message)
				}
				if strings.Contains(apiErr.Message, victim.Password) || strings.Contains(apiErr.Message, sslSentinel) || strings.Contains(apiErr.Message, "/etc/passwd") {
					t.Errorf("the refusal echoes a secret: %s", apiErr.Message)
				}
			case err != nil:
				t.Fatalf("submit: %v", err)
			default:
				v := waitEnded(t, c, resp.JobID, 2*time.Minute)
				t.Logf("job failed: %s", v.Error)
				if v.Status != jobs.StatusFailed {
					t.Fatalf("job %s ended %s, want failed (error %q)\nlog:\n%s", resp.JobID, v.Status, v.Error, jobLog(t, c, resp.JobID))
				}
				for _, leak := range []string{victim.Dir, "/etc/passwd", "connection refused", victim.Password, sslSentinel} {
					if strings.Contains(v.Error, leak) {
						t.Errorf("the job error reveals %q: %s", leak, v.Error)
					}
				}
				if l := jobLog(t, c, resp.JobID); strings.Contains(l, sslSentinel) || strings.Contains(l, victim.Password) {
					t.Errorf("the job log holds a secret:\n%s", l)
				}
			}
			// Nothing read, written or dropped.
			if n := count(t, victim, vdb, "secrets"); n != 20 {
				t.Errorf("victim table has %d rows, want 20", n)
			}
			if n := count(t, theirs, vdb, "precious"); n != 9 {
				t.Errorf("the target database was changed: precious has %d rows, want 9", n)
			}
			if dbExists(t, fresh, vdb) {
				t.Errorf("the victim's database was copied to the attacker's target")
				fresh.DropDB(vdb)
			}
		})
	}
	if l := readFile(t, srv.logPath); strings.Contains(l, sslSentinel) || strings.Contains(l, victim.Password) {
		t.Errorf("the serve log holds a secret")
	}
}

// TestAPIRefusesTargetOnTheSourceServer: through serve, with loopback
// allowed, a target naming the source server by another name fails the
// job before anything changes.
func TestAPIRefusesTargetOnTheSourceServer(t *testing.T) {
	src := pgtest.New(t, pgtest.Options{})
	db, _ := src.NewDB(t)
	src.Exec(t, db, "CREATE TABLE keep (id int PRIMARY KEY); INSERT INTO keep SELECT generate_series(1, 30)")
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "e2e")
	srv := startServe(t, dataDir, "--check-interval", "500ms")
	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}
	resp, err := c.Submit(context.Background(), jobs.Request{
		SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandInit,
		SourceURL: clusterURL(src, "127.0.0.1", "postgres", "sslmode=disable"),
		TargetURL: clusterURL(src, "localhost", "template1", "sslmode=disable"),
		Filter:    jobs.Filter{IncludeDatabases: []string{db}},
		Options:   jobs.Options{NoSync: true, DropExisting: true},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	v := waitEnded(t, c, resp.JobID, 2*time.Minute)
	if v.Status != jobs.StatusFailed || !strings.Contains(v.Error, "same PostgreSQL server") {
		t.Fatalf("job ended %s: %q", v.Status, v.Error)
	}
	if n := count(t, src, db, "keep"); n != 30 {
		t.Fatalf("source table keep has %d rows, want 30", n)
	}
}
