package replicator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestInitRefusesTargetOnTheSourceServer is the reproduction: a
// target that names the source server (another database, or localhost for
// 127.0.0.1) with --drop-existing dropped the source database. Seen
// failing first: exit 0 and the source table gone.
func TestInitRefusesTargetOnTheSourceServer(t *testing.T) {
	src := pgtest.New(t, pgtest.Options{})
	db, _ := src.NewDB(t)
	src.Exec(t, db, "CREATE TABLE keep (id int PRIMARY KEY); INSERT INTO keep SELECT generate_series(1, 50)")
	// A plain user (no superuser), to show the check needs no privilege.
	src.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE plain_%[1]s LOGIN CREATEDB PASSWORD 'plain-pw'; GRANT ALL ON DATABASE %[1]s TO plain_%[1]s", db))
	t.Cleanup(func() { src.Exec(t, "postgres", fmt.Sprintf("DROP OWNED BY plain_%[1]s; DROP ROLE plain_%[1]s", db)) })

	source := adminURL(src)
	port := strings.TrimPrefix(strings.Split(strings.Split(source, "@")[1], "/")[0], "127.0.0.1:")
	cases := map[string]string{
		"same URL, another database": src.URL("template1").Secret(),
		"localhost for 127.0.0.1":    strings.Replace(source, "@127.0.0.1:", "@localhost:", 1),
		"a plain user":               fmt.Sprintf("postgres://plain_%s:plain-pw@localhost:%s/postgres?sslmode=disable", db, port),
	}
	for name, target := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "init", "--local", "--yes", "--no-sync", "--drop-existing",
				"--source", source, "--target", target, "--include-databases", db)
			if code == 0 {
				t.Fatalf("init exited 0 with target = source server\nstdout:\n%s\nstderr:\n%s", out, errOut)
			}
			if !strings.Contains(errOut, "same PostgreSQL server") {
				t.Errorf("stderr does not say why:\n%s", errOut)
			}
			if strings.Contains(errOut+out, src.Password) {
				t.Errorf("a password appears in the output")
			}
			if n := countRows(t, src, db, "keep"); n != 50 {
				t.Fatalf("source table keep has %d rows, want 50", n)
			}
		})
	}
}

func TestSameServerIdentity(t *testing.T) {
	src, dst := pgtest.Pair(t)
	ctx := context.Background()
	a, b, c := src.Conn(t, "postgres"), src.Conn(t, "template1"), dst.Conn(t, "postgres")
	if err := pg.RefuseSameServer(ctx, a, b, src.URL("postgres"), src.URL("template1")); !errors.Is(err, pg.ErrSameServer) {
		t.Errorf("two databases of one server: %v, want ErrSameServer", err)
	}
	if err := pg.RefuseSameServer(ctx, a, c, src.URL("postgres"), dst.URL("postgres")); err != nil {
		t.Errorf("two servers: %v", err)
	}
}

func countRows(t *testing.T, c *pgtest.Cluster, db, table string) int {
	t.Helper()
	conn := c.Conn(t, db)
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+pg.Ident(table)).Scan(&n); err != nil {
		t.Fatalf("count %s.%s: %v", db, table, err)
	}
	return n
}

// TestDropExistingRefusesADatabaseInUse: --drop-existing does not force
// away a target database that others use or that publishes (it may be a
// live source); it names what it drops before it does. Seen failing
// first: the database was dropped WITH (FORCE).
func TestDropExistingRefusesADatabaseInUse(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	dst.Exec(t, db, "CREATE TABLE precious (id int); INSERT INTO precious SELECT generate_series(1, 7)")
	initArgs := []string{"init", "--local", "--yes", "--no-sync", "--drop-existing",
		"--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db}

	held := dst.Conn(t, db)
	code, _, errOut := runCLI(t, initArgs...)
	if code == 0 || !strings.Contains(errOut, "other session(s) use it") {
		t.Fatalf("with a session open: exit %d\n%s", code, errOut)
	}
	held.Close(context.Background())
	waitNoSessions(t, dst, db)
	if n := countRows(t, dst, db, "precious"); n != 7 {
		t.Fatalf("precious has %d rows, want 7", n)
	}

	dst.Exec(t, db, "CREATE PUBLICATION someones_pub FOR TABLE precious")
	code, _, errOut = runCLI(t, initArgs...)
	if code == 0 || !strings.Contains(errOut, "it is a replication source") {
		t.Fatalf("with a publication: exit %d\n%s", code, errOut)
	}
	if n := countRows(t, dst, db, "precious"); n != 7 {
		t.Fatalf("precious has %d rows, want 7", n)
	}

	dst.Exec(t, db, "DROP PUBLICATION someones_pub")
	waitNoSessions(t, dst, db)
	code, _, errOut = runCLI(t, initArgs...)
	if code != 0 {
		t.Fatalf("plain --drop-existing: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "dropping database "+db) {
		t.Errorf("init did not say what it drops:\n%s", errOut)
	}
}

// waitNoSessions waits until the backends of closed connections to db are
// gone (a backend exits a moment after its client said goodbye).
func waitNoSessions(t *testing.T, c *pgtest.Cluster, db string) {
	t.Helper()
	conn := c.Conn(t, "postgres")
	defer conn.Close(context.Background())
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still in %s", n, db)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSyncAndCutoverRefuseTargetOnTheSourceServer: the other writing
// commands refuse the same way (sync would create a publication, slot and
// subscription on the source; cutover would drop them).
func TestSyncAndCutoverRefuseTargetOnTheSourceServer(t *testing.T) {
	src := pgtest.New(t, pgtest.Options{})
	db, _ := src.NewDB(t)
	src.Exec(t, db, "CREATE TABLE keep (id int PRIMARY KEY); INSERT INTO keep SELECT generate_series(1, 5)")
	source := adminURL(src)
	target := strings.Replace(source, "@127.0.0.1:", "@localhost:", 1)
	for _, args := range [][]string{
		{"sync", "--source", source, "--target", target, "--include-databases", db},
		{"cutover", "--yes", "--source", source, "--target", target, "--include-databases", db},
	} {
		code, out, errOut := runCLI(t, args...)
		if code == 0 || !strings.Contains(errOut+out, "same PostgreSQL server") {
			t.Errorf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", args[0], code, out, errOut)
		}
	}
	conn := src.Conn(t, db)
	defer conn.Close(context.Background())
	var pubs, subs int
	if err := conn.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM pg_publication), (SELECT count(*) FROM pg_subscription)").Scan(&pubs, &subs); err != nil {
		t.Fatal(err)
	}
	if pubs != 0 || subs != 0 {
		t.Errorf("the source got %d publications and %d subscriptions", pubs, subs)
	}
}
