package sqlitequeue_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/queuetest"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqlitequeue"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		db, err := sqlitedb.Open(context.Background(), filepath.Join(t.TempDir(), sqlitedb.FileName))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return sqlitequeue.New(db, sqlitequeue.Options{})
	})
}

// Two Queue values on one file (two processes, in effect) share messages,
// and named queues in one table do not see each other's messages.
func TestSharedFileAndNamedQueues(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), sqlitedb.FileName)
	open := func() *sqlitequeue.Queue {
		db, err := sqlitedb.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return sqlitequeue.New(db, sqlitequeue.Options{PollInterval: 20 * time.Millisecond})
	}
	producer, consumer := open(), open()
	if err := producer.Send(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	ds, err := consumer.Receive(ctx, 10, time.Minute, 5*time.Second)
	if err != nil || len(ds) != 1 || ds[0].JobID != "job-1" {
		t.Fatalf("consumer on another connection got %+v, %v", ds, err)
	}

	db, err := sqlitedb.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other := sqlitequeue.New(db, sqlitequeue.Options{Name: "other"})
	if err := other.Send(ctx, "job-other"); err != nil {
		t.Fatal(err)
	}
	if ds, err := consumer.Receive(ctx, 10, time.Minute, 0); err != nil || len(ds) != 0 {
		t.Fatalf("provision queue received %+v from queue other (err %v)", ds, err)
	}
	if ds, err := other.Receive(ctx, 10, time.Minute, 0); err != nil || len(ds) != 1 {
		t.Fatalf("queue other: %+v, %v", ds, err)
	}
}

// Messages survive closing and reopening the file (a restart of serve).
func TestSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), sqlitedb.FileName)
	db, err := sqlitedb.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	q := sqlitequeue.New(db, sqlitequeue.Options{})
	for _, id := range []string{"leased", "waiting"} {
		if err := q.Send(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if ds, err := q.Receive(ctx, 1, time.Second, 0); err != nil || len(ds) != 1 || ds[0].JobID != "leased" {
		t.Fatalf("lease before restart: %+v, %v", ds, err)
	}
	q.Close()
	db.Close()

	db, err = sqlitedb.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q = sqlitequeue.New(db, sqlitequeue.Options{})
	got := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		ds, err := q.Receive(ctx, 10, time.Minute, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got[d.JobID] = d.ReceiveCount
		}
	}
	if got["waiting"] != 1 || got["leased"] != 2 {
		t.Errorf("after restart got receive counts %v, want waiting:1 and leased:2 (its lease ran out)", got)
	}
}

func TestClosedQueue(t *testing.T) {
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), sqlitedb.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := sqlitequeue.New(db, sqlitequeue.Options{})
	done := make(chan error, 1)
	go func() {
		_, err := q.Receive(ctx, 1, time.Minute, time.Minute)
		done <- err
	}()
	q.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Receive on a closed queue returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a waiting Receive")
	}
	if err := q.Send(ctx, "x"); err == nil {
		t.Errorf("Send on a closed queue succeeded")
	}
}
