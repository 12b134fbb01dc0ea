package sqlitelog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/joblogtest"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/sqlitelog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/sqlitestore"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), filepath.Join(t.TempDir(), sqlitedb.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	joblogtest.Run(t, func(t *testing.T) joblog.Log { return sqlitelog.New(openDB(t), nil) })
}

func TestURLIsTheAPIRoute(t *testing.T) {
	l := sqlitelog.New(openDB(t), nil)
	if got := l.URL("3f2a", "pid-7"); got != "/jobs/3f2a/logs" {
		t.Errorf("URL = %q", got)
	}
}

func TestSeqAreContiguousUnderConcurrentAppends(t *testing.T) {
	// The service and the worker may both write a job's log.
	l := sqlitelog.New(openDB(t), nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if err := l.Append(ctx, "job-1", []joblog.Line{{Text: fmt.Sprintf("w%d %d", w, i)}, {Text: "second"}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := l.Read(ctx, "job-1", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 80 {
		t.Fatalf("read %d lines, want 80", len(got))
	}
	for i, ln := range got {
		if ln.Seq != int64(i+1) {
			t.Fatalf("line %d has seq %d, want %d", i, ln.Seq, i+1)
		}
		// Each Append's two lines stay together.
		if i%2 == 1 && ln.Text != "second" {
			t.Fatalf("line %d = %q: appends interleaved", i, ln.Text)
		}
	}
}

func TestSeqNotAfterLastRefused(t *testing.T) {
	l := sqlitelog.New(openDB(t), nil)
	ctx := context.Background()
	if err := l.Append(ctx, "job-1", []joblog.Line{{Seq: 5, Text: "five"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, "job-1", []joblog.Line{{Text: "six"}, {Seq: 3, Text: "three"}}); err == nil {
		t.Fatal("a line numbered before the last was accepted")
	}
	got, _ := l.Read(ctx, "job-1", 0, 0)
	if len(got) != 1 {
		t.Errorf("a refused Append left %d lines, want the batch rolled back (1 line)", len(got))
	}
}

func TestLinesPurgedWithTheirJob(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	store := jobstore.New(sqlitestore.New(db), clock)
	l := sqlitelog.New(db, nil)

	old, err := store.Create(ctx, &jobs.Job{Owner: "o"})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(24 * time.Hour)
	young, err := store.Create(ctx, &jobs.Job{Owner: "o"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{old.ID, young.ID} {
		if err := l.Append(ctx, id, []joblog.Line{{Text: "hello"}}); err != nil {
			t.Fatal(err)
		}
	}
	now = old.ExpiresAt.Add(time.Second)
	n, err := store.Purge(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if got, err := l.Read(ctx, old.ID, 0, 0); err != nil || len(got) != 0 {
		t.Errorf("purged job still has %d log lines (err %v)", len(got), err)
	}
	if got, err := l.Read(ctx, young.ID, 0, 0); err != nil || len(got) != 1 {
		t.Errorf("unexpired job has %d log lines (err %v), want 1", len(got), err)
	}
	if _, err := store.Get(ctx, old.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("purged job: %v", err)
	}
}
