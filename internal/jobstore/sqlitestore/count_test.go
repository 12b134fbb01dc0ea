package sqlitestore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/sqlitestore"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

// CountActive agrees with len(Active) through the lifecycle.
func TestCountActiveMatchesActive(t *testing.T) {
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), sqlitedb.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := jobstore.New(sqlitestore.New(db), func() time.Time { return now })
	check := func(want int) {
		t.Helper()
		n, err := s.CountActive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := s.Active(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != want || len(all) != want {
			t.Fatalf("CountActive %d, len(Active) %d, want %d", n, len(all), want)
		}
	}
	check(0)
	var ids []string
	for range 3 {
		j, err := s.Create(ctx, &jobs.Job{Owner: "o", Spec: jobs.Spec{Command: jobs.CommandInit}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	check(3)
	if _, err := s.Apply(ctx, ids[0], jobs.Started("w")); err != nil {
		t.Fatal(err)
	}
	check(3)
	if _, err := s.Apply(ctx, ids[1], jobs.Cancelled()); err != nil {
		t.Fatal(err)
	}
	check(2)
	if _, err := s.Apply(ctx, ids[0], jobs.Completed(nil)); err != nil {
		t.Fatal(err)
	}
	check(1)
}

// ActiveWithWorker lists exactly the active jobs that have a worker, and
// the active count follows every way a job enters or leaves the active
// set (create, provision, start, requeue, end, purge).
func TestActiveWithWorkerAndCountThroughLifecycle(t *testing.T) {
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), sqlitedb.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := jobstore.New(sqlitestore.New(db), func() time.Time { return now })
	check := func(wantActive int, wantWorkers ...string) {
		t.Helper()
		n, err := s.CountActive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := s.Active(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != wantActive || len(all) != wantActive {
			t.Fatalf("CountActive %d, len(Active) %d, want %d", n, len(all), wantActive)
		}
		got, err := s.ActiveWithWorker(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var workers []string
		for _, j := range got {
			workers = append(workers, j.WorkerID)
		}
		if fmt.Sprint(workers) != fmt.Sprint(wantWorkers) {
			t.Fatalf("ActiveWithWorker workers %v, want %v", workers, wantWorkers)
		}
	}
	var ids []string
	for range 4 {
		j, err := s.Create(ctx, &jobs.Job{Owner: "o", Spec: jobs.Spec{Command: jobs.CommandInit}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
		now = now.Add(time.Second)
	}
	check(4)
	apply := func(id string, tr jobs.Transition) {
		t.Helper()
		if _, err := s.Apply(ctx, id, tr); err != nil {
			t.Fatal(err)
		}
	}
	apply(ids[0], jobs.Provisioned("w0", "local", ""))
	apply(ids[1], jobs.Started("w1"))
	check(4, "w0", "w1") // oldest first
	apply(ids[1], jobs.Requeued("worker lost"))
	check(4, "w0")
	apply(ids[0], jobs.Started("w0"))
	apply(ids[0], jobs.Completed(nil))
	apply(ids[2], jobs.Cancelled())
	check(2)
	apply(ids[3], jobs.Started("w3"))
	check(2, "w3")
	// Purged while active (past its expiry): it leaves the count too.
	now = now.Add(jobs.Retention + time.Hour)
	if n, err := s.Purge(ctx); err != nil || n != 4 {
		t.Fatalf("Purge: %d, %v; want 4", n, err)
	}
	check(0)
}
