package sqlitedb_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

func batchDB(t *testing.T) (*sqlitedb.Batcher, *sqlitedb.Stmts, func() int) {
	t.Helper()
	db := open(t, filepath.Join(t.TempDir(), sqlitedb.FileName))
	if _, err := db.Exec(`CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0)) STRICT`); err != nil {
		t.Fatal(err)
	}
	st := sqlitedb.NewStmts(db)
	count := func() int {
		t.Helper()
		var n int
		if err := st.QueryRow(context.Background(), `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return sqlitedb.NewBatcher(db, st), st, count
}

// Many concurrent writers: every write is committed when Exec returns and
// reports its own result.
func TestBatcherConcurrentWrites(t *testing.T) {
	b, _, count := batchDB(t)
	ctx := context.Background()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every other key is written twice: the second insert of it
			// affects no row, and says so.
			k := fmt.Sprintf("k%d", i/2)
			res, err := b.Exec(ctx, `INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT DO NOTHING`, k, i)
			if err != nil {
				errs <- err
				return
			}
			if _, err := res.RowsAffected(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := count(); got != n/2 {
		t.Fatalf("%d rows, want %d", got, n/2)
	}
}

// A write that fails (here a CHECK constraint) fails alone: the writes
// batched with it are committed.
func TestBatcherBadWriteFailsAlone(t *testing.T) {
	b, _, count := batchDB(t)
	ctx := context.Background()
	const n = 100
	var wg sync.WaitGroup
	failed := make(chan int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := i
			if i%10 == 3 {
				v = -1 // violates CHECK (v >= 0)
			}
			_, err := b.Exec(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, fmt.Sprintf("k%d", i), v)
			if err != nil {
				if !sqlitedb.IsConstraint(err) {
					t.Errorf("write %d: %v, want a constraint error", i, err)
				}
				failed <- i
			}
		}()
	}
	wg.Wait()
	close(failed)
	nFailed := 0
	for i := range failed {
		if i%10 != 3 {
			t.Errorf("good write %d failed", i)
		}
		nFailed++
	}
	if nFailed != n/10 {
		t.Errorf("%d writes failed, want %d", nFailed, n/10)
	}
	if got := count(); got != n-n/10 {
		t.Fatalf("%d rows, want %d", got, n-n/10)
	}
}

func TestBatcherCancelledContext(t *testing.T) {
	b, _, count := batchDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Exec(ctx, `INSERT INTO t (k, v) VALUES ('x', 1)`); !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec with a cancelled context: %v", err)
	}
	if got := count(); got != 0 {
		t.Fatalf("%d rows written by a cancelled Exec", got)
	}
}

func TestStmtsReuseAndErrors(t *testing.T) {
	_, st, _ := batchDB(t)
	ctx := context.Background()
	a, err := st.Prepare(ctx, `SELECT v FROM t WHERE k = ?`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Prepare(ctx, `SELECT v FROM t WHERE k = ?`)
	if err != nil || a != b {
		t.Fatalf("second Prepare of the same query: %p %v, want %p", b, err, a)
	}
	if _, err := st.Exec(ctx, `INSERT INTO nope VALUES (1)`); err == nil {
		t.Fatal("Exec on a missing table succeeded")
	}
	var v int
	if err := st.QueryRow(ctx, `SELECT v FROM nope`).Scan(&v); err == nil {
		t.Fatal("QueryRow on a missing table succeeded")
	}
}
