package replicator_test

import (
	"context"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/dbcompare"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// A source made read-only by cutover --block-writes (a database setting)
// copies: the setting reaches the target, after the data.
func TestReadOnlySourceSettingCopies(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 500) g;
CREATE INDEX t_v ON t (v); CREATE SEQUENCE s; SELECT setval('s', 42);`)
	src.Exec(t, "postgres", "ALTER DATABASE "+pg.Ident(db)+" SET default_transaction_read_only = on")

	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db, "--yes", "--jobs", "2")
	if code != 0 {
		t.Fatalf("init exit %d\n%s\n%s", code, out, errOut)
	}
	var ro string
	if err := dst.Conn(t, db).QueryRow(context.Background(), "SHOW default_transaction_read_only").Scan(&ro); err != nil {
		t.Fatal(err)
	}
	if ro != "on" {
		t.Fatalf("target database setting default_transaction_read_only = %s, want on (copied from the source)", ro)
	}
	dbcompare.Equal(t, src.Conn(t, db), dst.Conn(t, db))
}
