package replicator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/cli"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// Each failure a user will meet gives one clear message with the fix and a
// non-zero exit, and never prints a password.
func TestInitFailuresExplainTheFix(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
	const wrongPassword = "Wr0ng-Sentinel-Pw"
	dst.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s_limited LOGIN PASSWORD 'limited-pw' NOCREATEDB", db))
	limited := fmt.Sprintf("postgres://%s_limited:limited-pw@127.0.0.1:%d/postgres", db, dst.Port)

	notEmpty, _ := dst.NewDB(t)
	dst.Exec(t, notEmpty, "CREATE TABLE other (x int)")
	src.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(notEmpty))
	t.Cleanup(func() { src.DropDB(notEmpty) })

	cases := []struct {
		name, source, target, db string
		wantErr, wantTry         string
	}{
		{"unreachable host", "postgres://u:p@127.0.0.1:1/postgres", adminURL(dst), db,
			"cannot reach the server", "check that the source server is running"},
		{"wrong password", fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres", wrongPassword, src.Port), adminURL(dst), db,
			"password authentication failed", "check the user name and password in the source URL"},
		{"missing database", src.URL("no_such_db").Secret(), adminURL(dst), db,
			"does not exist", "create the database on the source server"},
		{"missing privilege", adminURL(src), limited, db,
			"may not create databases", "CREATEDB"},
		{"target not empty", adminURL(src), adminURL(dst), notEmpty,
			"already holds 1 tables", "--drop-existing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "init", "--source", c.source, "--target", c.target,
				"--include-databases", c.db, "--no-sync", "--yes")
			if code == 0 {
				t.Fatalf("exit 0; want a failure\n%s", errOut)
			}
			if !strings.Contains(errOut, "Error: ") || !strings.Contains(errOut, c.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", c.wantErr, errOut)
			}
			if !strings.Contains(errOut, "Try: ") || !strings.Contains(errOut, c.wantTry) {
				t.Errorf("stderr lacks the fix %q:\n%s", c.wantTry, errOut)
			}
			for _, pw := range []string{wrongPassword, src.Password, dst.Password, "limited-pw"} {
				if strings.Contains(out+errOut, pw) {
					t.Errorf("a password appears in the output")
				}
			}
		})
	}

	// The refused target is untouched; --drop-existing replaces it.
	code, _, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", notEmpty, "--no-sync", "--yes", "--drop-existing")
	if code != 0 {
		t.Fatalf("--drop-existing: exit %d\n%s", code, errOut)
	}
}

func TestTooOldServerIsRefused(t *testing.T) {
	err := pg.CheckVersion(110005, "source")
	if err == nil || !strings.Contains(err.Error(), "older than the oldest supported") {
		t.Fatalf("CheckVersion(11) = %v", err)
	}
	if err := pg.CheckVersion(150004, "source"); err != nil {
		t.Fatalf("CheckVersion(15) = %v", err)
	}
}

func TestUsageErrorsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--target", "postgres://h/db", "--yes"}, "--source is required"},
		{[]string{"init", "--source", "mysql://h/db", "--target", "postgres://h/db"}, "--source"},
		{[]string{"init", "--source", "postgres://h/db", "--target", "postgres://h/db", "--time-filter", "t:c:6 fortnights"}, "fortnights"},
		{[]string{"init", "--source", "postgres://h/db", "--target", "postgres://h/db", "--jobs", "0"}, "--jobs"},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %q", c.args, code, errOut, c.want)
		}
	}
	// Without a terminal, init asks for --yes instead of prompting.
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	code, _, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db)
	if code != 2 || !strings.Contains(errOut, "pass --yes") {
		t.Errorf("no TTY and no --yes: exit %d, stderr %q", code, errOut)
	}
}

// On a terminal with no filter, init offers the databases and tables to
// pick, shows the estimate and asks before changing anything.
func TestInitInteractiveSelectionAndConfirmation(t *testing.T) {
	src, dst := pgtest.Pair(t)
	a, _ := src.NewDB(t, dst)
	src.Exec(t, a, "CREATE TABLE keep (id int PRIMARY KEY); CREATE TABLE drop_me (id int); INSERT INTO keep VALUES (1)")

	io, in, _, errOut := iostreams.Test()
	io.SetTTY(true)
	// Answer "no" first: nothing may change.
	in.WriteString("\n\nn\n")
	ctx := context.Background()
	args := []string{"init", "--source", src.URL(a).Secret(), "--target", adminURL(dst), "--no-sync"}
	if code := cli.Run(ctx, io, args); code == 0 {
		t.Fatalf("answered no, but init ran:\n%s", errOut)
	}
	if !strings.Contains(errOut.String(), "Proceed?") || !strings.Contains(errOut.String(), "ROUGH ETA") {
		t.Fatalf("no estimate or confirmation shown:\n%s", errOut)
	}
	var exists bool
	_ = dst.Conn(t, "postgres").QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", a).Scan(&exists)
	if exists {
		t.Fatal("answered no, but the target database was created")
	}

	// Now pick database a by number and leave out one table, then confirm.
	est := listedDatabases(t, src)
	n := 0
	for i, name := range est {
		if name == a {
			n = i + 1
		}
	}
	io, in, _, errOut = iostreams.Test()
	io.SetTTY(true)
	// The database picker is skipped when the source has one database to
	// offer (other tests may have left theirs on this shared cluster).
	if len(est) > 1 {
		fmt.Fprintf(in, "%d\n", n)
	}
	fmt.Fprintf(in, "%s.public.drop_me\ny\n", a)
	if code := cli.Run(ctx, io, args); code != 0 {
		t.Fatalf("interactive init exit %d:\n%s", code, errOut)
	}
	var tables []string
	rows, err := dst.Conn(t, a).Query(ctx, "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		tables = append(tables, s)
	}
	if strings.Join(tables, ",") != "keep" {
		t.Fatalf("target tables %v, want only keep", tables)
	}
}

func listedDatabases(t *testing.T, c *pgtest.Cluster) []string {
	rows, err := c.Conn(t, "postgres").Query(context.Background(),
		// The picker leaves out the postgres database unless it is named.
		"SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn AND datname <> 'postgres' ORDER BY datname")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		out = append(out, s)
	}
	return out
}
