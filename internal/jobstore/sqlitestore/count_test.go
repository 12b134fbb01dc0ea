package sqlitestore_test

import (
	"context"
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
