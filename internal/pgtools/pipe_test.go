package pgtools_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/pgtools"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// When pg_dump fails (here: its user may not read a sequence), the error
// is pg_dump's, not pg_restore's "input file is too short".
func TestPipeReportsTheProducersError(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	role := db + "_nosel"
	src.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'pw-nosel'", role))
	t.Cleanup(func() { src.Exec(t, db, "DROP OWNED BY "+role); src.Exec(t, "postgres", "DROP ROLE "+role) })
	src.Exec(t, db, fmt.Sprintf(`CREATE TABLE t (id int); INSERT INTO t VALUES (1); CREATE SEQUENCE invoice_no;
GRANT SELECT ON t TO %s; REVOKE ALL ON SEQUENCE invoice_no FROM PUBLIC;`, role))
	u := pg.MustParseURL(fmt.Sprintf("postgres://%s:pw-nosel@127.0.0.1%s/%s?sslmode=disable", role, strings.TrimPrefix(src.URL(db).Host(), "127.0.0.1"), db))

	ctx := context.Background()
	tools, err := pgtools.Find(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	dump := tools.Command(ctx, "pg_dump", u, "--format=custom")
	restore := tools.Command(ctx, "pg_restore", dst.URL(db), "--exit-on-error", "--single-transaction")
	err = pgtools.Pipe(dump, restore, u, dst.URL(db))
	if err == nil {
		t.Fatal("the dump succeeded without SELECT on the sequence; the test proves nothing")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "pg_dump") || !strings.Contains(msg, "permission denied for sequence invoice_no") {
		t.Fatalf("error does not lead with pg_dump's message:\n%s", msg)
	}
	if strings.Contains(msg, "pw-nosel") {
		t.Fatalf("the password leaked into the error:\n%s", msg)
	}
}
