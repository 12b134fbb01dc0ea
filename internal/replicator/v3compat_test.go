package replicator_test

import (
	"context"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestInitLeavesOutThePostgresDatabase: with no database named, init
// copies the user databases and not the postgres database (on hosted
// targets it is the provider's), and says so in its output.
func TestInitLeavesOutThePostgresDatabase(t *testing.T) {
	src := pgtest.New(t, pgtest.Options{Settings: []string{"wal_level = logical"}})
	dst := pgtest.New(t, pgtest.Options{})
	src.Exec(t, "postgres", `CREATE TABLE admin_stuff (id int PRIMARY KEY); INSERT INTO admin_stuff VALUES (1);`)
	src.Exec(t, "postgres", `CREATE DATABASE shop`)
	src.Exec(t, "shop", `CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 30);`)

	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst), "--no-sync", "--yes")
	if code != 0 {
		t.Fatalf("init exit %d\n%s\n%s", code, out, errOut)
	}
	ctx := context.Background()
	var n int
	if err := dst.Conn(t, "shop").QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 30 {
		t.Fatalf("shop.items on the target: %d rows, %v", n, err)
	}
	var copied bool
	if err := dst.Conn(t, "postgres").QueryRow(ctx, "SELECT to_regclass('public.admin_stuff') IS NOT NULL").Scan(&copied); err != nil {
		t.Fatal(err)
	}
	if copied {
		t.Fatal("the postgres database was replicated without being named")
	}
	if !strings.Contains(out+errOut, "postgres database is left out unless named") {
		t.Fatalf("no note about the postgres database in the output:\n%s\n%s", out, errOut)
	}
}
