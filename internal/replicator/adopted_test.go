package replicator_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/dbcompare"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// An empty database that already existed on the target (like its own
// "postgres") is used, and after a kill the re-run empties it again but
// never drops it.
func TestInitNeverDropsAnAdoptedDatabase(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT g, 'a' FROM generate_series(1, 3000) g;
CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a); INSERT INTO b SELECT g, g FROM generate_series(1, 3000) g;`)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	ctx := context.Background()
	oid := func() uint32 {
		var o uint32
		if err := dst.Conn(t, "postgres").QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = $1", db).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	before := oid()
	args := []string{"init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db, "--yes", "--jobs", "1"}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SEREN_TEST_CLI=1", "SEREN_TEST_KILL_AFTER=2")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("the run was not killed:\n%s", out)
	}
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("re-run exit %d\n%s\n%s", code, out, errOut)
	}
	if after := oid(); after != before {
		t.Fatalf("the pre-existing target database was dropped and created again (oid %d -> %d)", before, after)
	}
	dbcompare.Equal(t, src.Conn(t, db), dst.Conn(t, db))
}
