package logical

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func mustURL(t *testing.T, s string) pg.URL {
	t.Helper()
	u, err := pg.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// syncPair is one database on the source and the same-named empty one on
// the target, with the replication objects torn down at the end.
type syncPair struct {
	src, dst       *pgtest.Cluster
	db             string
	srcURL, dstURL pg.URL
	names          ObjectNames
}

func newSyncPair(t *testing.T, src, dst *pgtest.Cluster, schema string) *syncPair {
	t.Helper()
	db, srcURL := src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	p := &syncPair{src: src, dst: dst, db: db, srcURL: srcURL, dstURL: dst.URL(db), names: PairNames(db, targetID(t, dst))}
	if schema != "" {
		src.Exec(t, db, schema)
		dst.Exec(t, db, schema)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err1 := pgx.Connect(ctx, srcURL.Secret())
		d, err2 := pgx.Connect(ctx, p.dstURL.Secret())
		if err1 == nil {
			defer s.Close(ctx)
		}
		if err2 == nil {
			defer d.Close(ctx)
		} else {
			d = nil
		}
		if err1 != nil {
			t.Errorf("cleanup: %v", err1)
			return
		}
		if err := Teardown(ctx, s, d, p.names); err != nil {
			t.Errorf("cleanup teardown: %v", err)
		}
	})
	return p
}

// copyAtSnapshot copies table from source to target inside a REPEATABLE
// READ transaction set to the slot's exported snapshot.
func copyAtSnapshot(t *testing.T, ctx context.Context, p *syncPair, snapshot string, tables ...string) {
	t.Helper()
	s := p.src.Conn(t, p.db)
	d := p.dst.Conn(t, p.db)
	tx, err := s.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+pg.Literal(snapshot)); err != nil {
		t.Fatalf("set snapshot: %v", err)
	}
	for _, tbl := range tables {
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			_, err := s.PgConn().CopyTo(ctx, pw, "COPY "+pg.Ident("public", tbl)+" TO STDOUT")
			pw.CloseWithError(err)
			errc <- err
		}()
		if _, err := d.PgConn().CopyFrom(ctx, pr, "COPY "+pg.Ident("public", tbl)+" FROM STDIN"); err != nil {
			t.Fatalf("copy %s in: %v", tbl, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("copy %s out: %v", tbl, err)
		}
	}
}

// rows returns every row of table as text, in a stable order.
func rows(t *testing.T, ctx context.Context, c *pgtest.Cluster, db, table string) []string {
	t.Helper()
	conn := c.Conn(t, db)
	r, err := conn.Query(ctx, fmt.Sprintf("SELECT t::text FROM %s t ORDER BY t::text", pg.Ident("public", table)))
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	return out
}

func sameRows(t *testing.T, ctx context.Context, p *syncPair, tables ...string) {
	t.Helper()
	for _, tbl := range tables {
		a, b := rows(t, ctx, p.src, p.db, tbl), rows(t, ctx, p.dst, p.db, tbl)
		if len(a) != len(b) {
			t.Errorf("table %s: source has %d rows, target %d", tbl, len(a), len(b))
			continue
		}
		for i := range a {
			if a[i] != b[i] {
				t.Errorf("table %s: row %d differs: source %s, target %s", tbl, i, a[i], b[i])
				break
			}
		}
	}
}

func targetID(t testing.TB, c *pgtest.Cluster) string {
	t.Helper()
	id, err := TargetID(context.Background(), c.Conn(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}
