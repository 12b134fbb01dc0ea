package replicator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// Row filters are attacker input (API jobs): each attack below used to run
// on the source server through init's COPY or sync's probe. Each must now
// be refused before anything runs, with a plain message, and leave no
// trace on the source.

// TestFilterAttacksRefused: volatile functions, other schemas' functions
// and subqueries in a --table-filter are refused; the function's effect
// did not happen.
func TestFilterAttacksRefused(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, x text); INSERT INTO t SELECT g, g::text FROM generate_series(1, 10) g;
CREATE SEQUENCE s`)
	ctx := context.Background()
	victim := src.Conn(t, db)
	var pid int
	if err := victim.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	var lo uint32
	if err := src.Conn(t, db).QueryRow(ctx, "SELECT lo_from_bytea(0, 'exported')").Scan(&lo); err != nil {
		t.Fatal(err)
	}
	loFile := filepath.Join(src.Dir, "lo-export-"+db)

	tests := []struct {
		name, pred, msg string
		after           func(t *testing.T)
	}{
		{"pg_terminate_backend", fmt.Sprintf("pg_terminate_backend(%d) AND id > 0", pid), "function pg_terminate_backend is not allowed",
			func(t *testing.T) {
				if err := victim.Ping(ctx); err != nil {
					t.Errorf("the backend the filter named was terminated: %v", err)
				}
			}},
		{"lo_export", fmt.Sprintf("lo_export(%d, %s) > 0", lo, pg.Literal(loFile)), "function lo_export is not allowed",
			func(t *testing.T) {
				if _, err := os.Stat(loFile); err == nil {
					t.Errorf("lo_export wrote %s on the source server", loFile)
				}
			}},
		{"nextval", "nextval('s') > 0", "function nextval is not allowed",
			func(t *testing.T) {
				var called bool
				if err := src.Conn(t, db).QueryRow(ctx, "SELECT is_called FROM s").Scan(&called); err != nil || called {
					t.Errorf("the filter advanced sequence s (is_called %v, %v)", called, err)
				}
			}},
		{"set_config", "set_config('default_transaction_read_only', 'off', false) = 'off'", "function set_config is not allowed", nil},
		{"pg_advisory_lock", "pg_advisory_lock(4242) IS NOT NULL", "function pg_advisory_lock is not allowed", nil},
		{"pg_sleep", "pg_sleep(0) IS NOT NULL", "function pg_sleep is not allowed", nil},
		{"dblink", "dblink_exec('dbname=postgres', 'DROP DATABASE x') = 'OK'", "function dblink_exec is not allowed", nil},
		{"qualified", "public.lower(x) = 'a'", "function public.lower is not allowed", nil},
		{"pg_authid", "x IN (SELECT rolpassword FROM pg_authid)", "subqueries are not allowed", nil},
		{"stacked", "true; COPY (SELECT 1) TO PROGRAM 'true'", "not several statements", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
				"--include-databases", db, "--no-sync", "--yes", "--drop-existing", "--table-filter", db+".t:"+tt.pred)
			if code == 0 {
				t.Errorf("init with filter %q succeeded; want it refused\n%s", tt.pred, out)
			}
			if !strings.Contains(errOut, tt.msg) {
				t.Errorf("init with filter %q: error does not say %q:\n%s", tt.pred, tt.msg, errOut)
			}
			if tt.after != nil {
				tt.after(t)
			}
		})
	}
}

// TestFilterLiteralEscapeIsInert: with standard_conforming_strings off
// (the database's default, or the URL's options), a backslash made the
// old checker's idea of where a string ends differ from the server's, and
// the "string" closed the COPY wrapper and ran COPY ... TO PROGRAM. Now
// the predicate is re-emitted from PostgreSQL's parse tree and run under
// standard_conforming_strings = on: it is an ordinary comparison and copies
// exactly the rows it names.
func TestFilterLiteralEscapeIsInert(t *testing.T) {
	src, dst := pgtest.Pair(t)
	for _, via := range []string{"database default", "URL options"} {
		t.Run(via, func(t *testing.T) {
			db, _ := src.NewDB(t, dst)
			src.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, x text);
INSERT INTO t VALUES (1, '\'), (2, 'b'), (3, ')) TO PROGRAM')`)
			source := adminURL(src)
			if via == "database default" {
				src.Exec(t, "postgres", "ALTER DATABASE "+pg.Ident(db)+" SET standard_conforming_strings = off")
			} else {
				sep := "?"
				if strings.Contains(source, "?") {
					sep = "&"
				}
				source += sep + "options=-c%20standard_conforming_strings%3Doff"
			}
			marker := filepath.Join(src.Dir, "pwned-"+db)
			pred := `x = '\' AND x = '))) TO PROGRAM $$touch ` + marker + `$$ --'`
			code, out, errOut := runCLI(t, "init", "--source", source, "--target", adminURL(dst),
				"--include-databases", db, "--no-sync", "--yes", "--table-filter", db+".t:"+pred)
			if _, err := os.Stat(marker); err == nil {
				t.Fatalf("the filter ran a shell command on the source server (%s exists)\n%s\n%s", marker, out, errOut)
			}
			if code != 0 {
				t.Fatalf("init exit %d\n%s\n%s", code, out, errOut)
			}
			var n int
			if err := dst.Conn(t, db).QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("target has %d rows; the filter (x is both '\\' and another string) keeps none", n)
			}
		})
	}
}

// TestSyncFilterProbeRefused: sync checks that the target holds the
// filtered rows by running the filter on the source; that probe ran a
// volatile function outside any read-only transaction.
func TestSyncFilterProbeRefused(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	ddl := `CREATE TABLE t (id int PRIMARY KEY, x text)`
	src.Exec(t, db, ddl+`; INSERT INTO t SELECT g, g::text FROM generate_series(1, 10) g`)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	dst.Exec(t, db, ddl+`; INSERT INTO t SELECT g, g::text FROM generate_series(1, 10) g`)
	var lo uint32
	if err := src.Conn(t, db).QueryRow(context.Background(), "SELECT lo_from_bytea(0, 'exported')").Scan(&lo); err != nil {
		t.Fatal(err)
	}
	loFile := filepath.Join(src.Dir, "sync-probe-"+db)
	code, out, errOut := runCLI(t, "sync", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--table-filter", fmt.Sprintf("%s.t:lo_export(%d, %s) > 0", db, lo, pg.Literal(loFile)))
	if _, err := os.Stat(loFile); err == nil {
		t.Errorf("sync's probe ran lo_export on the source (%s exists)", loFile)
	}
	if code == 0 || !strings.Contains(errOut, "function lo_export is not allowed") {
		t.Errorf("sync exit %d; want it refused naming lo_export\n%s\n%s", code, out, errOut)
	}
}

// TestFilterOnUnknownColumnRefusedBeforeCopy: the grammar is checked
// without a connection; whether the columns exist is checked against the
// source before anything is created on the target.
func TestFilterOnUnknownColumnRefusedBeforeCopy(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, x text); INSERT INTO t VALUES (1, 'a')`)
	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--no-sync", "--yes", "--table-filter", db+".t:no_such_column > 1")
	if code == 0 || !strings.Contains(out+errOut, `column "no_such_column" does not exist`) {
		t.Fatalf("init exit %d; want it refused naming the column\n%s\n%s", code, out, errOut)
	}
	var exists bool
	if err := dst.Conn(t, "postgres").QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s was created on the target before the filter was found not to fit", db)
	}
}
