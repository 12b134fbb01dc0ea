package verifier

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// replicated creates database db on both clusters with schema sql (run on
// both), then a publication on the source and a subscription on the
// target that starts from now (copy_data = false), like init does.
func replicated(t *testing.T, sql string) (string, *pgtest.Cluster, *pgtest.Cluster) {
	t.Helper()
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	src.Exec(t, db, sql)
	dst.Exec(t, db, sql)
	src.Exec(t, db, "CREATE PUBLICATION verify_pub FOR ALL TABLES")
	conn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s", src.Port, src.User, src.Password, db)
	// Slot names are per cluster: name the slot after the database.
	dst.Exec(t, db, "CREATE SUBSCRIPTION verify_sub CONNECTION "+pg.Literal(conn)+" PUBLICATION verify_pub WITH (copy_data = false, slot_name = "+pg.Literal(db)+")")
	return db, src, dst
}

func syncOptions(t *testing.T, src, dst *pgtest.Cluster, db string) Options {
	t.Helper()
	rules, err := selection.Build(selection.Flags{IncludeDatabases: []string{db}})
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Source: src.URL("postgres"), Target: dst.URL("postgres"), Rules: rules,
		Jobs: 2, ChunkRows: 1000, CatchupTimeout: time.Minute,
		Logf: func(f string, a ...any) { t.Logf(f, a...) },
	}
}

func TestWaitsForSubscriberBeforeComparing(t *testing.T) {
	db, src, dst := replicated(t, `CREATE TABLE items (id int PRIMARY KEY, v text); CREATE TABLE events (at int, what text);`)
	// Writes committed just before verify starts: without waiting for the
	// subscriber, the target would lag behind.
	src.Exec(t, db, `INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, 20000) i;
		INSERT INTO events SELECT i, 'e' FROM generate_series(1, 5000) i;
		UPDATE items SET v = 'u' WHERE id % 10 = 0; DELETE FROM items WHERE id % 7 = 0;`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Verify(ctx, syncOptions(t, src, dst, db), nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.Identical() {
		t.Fatalf("not identical after catch-up: %+v", rep.Tables)
	}
	d := rep.Databases[0]
	if len(d.Subscriptions) != 1 || d.Subscriptions[0] != "verify_sub" || d.CaughtUpLSN == "" {
		t.Errorf("database result %+v, want subscription verify_sub caught up", d)
	}
}

func TestRechecksDifferencesWhileReplicating(t *testing.T) {
	db, src, dst := replicated(t, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT i, 'v' FROM generate_series(1, 3000) i;`)
	// Two rows diverge on the target; a write on the source repairs row 5
	// after the first pass (as an in-flight change would), row 7 stays wrong.
	dst.Exec(t, db, `UPDATE items SET v = 'diverged' WHERE id IN (5, 7)`)
	opts := syncOptions(t, src, dst, db)
	opts.Rechecks = 2
	opts.afterPass = func(round int) {
		if round == 0 {
			src.Exec(t, db, `UPDATE items SET v = 'v' WHERE id = 5`)
		}
	}
	rep, err := Verify(context.Background(), opts, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	tr := rep.Tables[0]
	if tr.Status != StatusDifferent || len(tr.Ranges) != 1 || len(tr.Ranges[0].Rows) != 1 || tr.Ranges[0].Rows[0].Key[0] != "7" {
		t.Fatalf("items: %+v, want only row 7 different", tr)
	}
	if d := rep.Databases[0]; d.Rechecks != 2 {
		t.Errorf("database: %+v, want 2 re-check rounds", d)
	}
	if !strings.Contains(strings.Join(tr.Notes, ";"), "persisted through 2 re-check") {
		t.Errorf("notes %q do not say the difference persisted", tr.Notes)
	}

	// Once row 7 is repaired too, the first pass already matches.
	src.Exec(t, db, `UPDATE items SET v = 'v' WHERE id = 7`)
	opts.afterPass = nil
	rep, err = Verify(context.Background(), opts, nil)
	if err != nil || !rep.Identical() || rep.Databases[0].Rechecks != 0 {
		t.Fatalf("after repair: err %v, report %+v", err, rep)
	}
}

func TestSettledDifferenceIsNotReported(t *testing.T) {
	db, src, dst := replicated(t, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT i, 'v' FROM generate_series(1, 3000) i;`)
	dst.Exec(t, db, `UPDATE items SET v = 'diverged' WHERE id = 5`)
	opts := syncOptions(t, src, dst, db)
	opts.afterPass = func(round int) {
		if round == 0 {
			src.Exec(t, db, `UPDATE items SET v = 'v' WHERE id = 5`)
		}
	}
	rep, err := Verify(context.Background(), opts, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.Identical() || rep.Databases[0].Settled != 1 || rep.Databases[0].Rechecks != 1 {
		t.Fatalf("report %+v %+v, want identical after one re-check that settled one range", rep.Databases, rep.Tables)
	}
}

func TestCannotCatchUp(t *testing.T) {
	db, src, dst := replicated(t, `CREATE TABLE items (id int PRIMARY KEY, v text);`)
	// A row already on the target makes the subscriber's apply fail forever.
	dst.Exec(t, db, `INSERT INTO items VALUES (1, 'target')`)
	src.Exec(t, db, `INSERT INTO items VALUES (1, 'source')`)
	opts := syncOptions(t, src, dst, db)
	opts.CatchupTimeout = 3 * time.Second
	_, err := Verify(context.Background(), opts, nil)
	if err == nil || !strings.Contains(err.Error(), "could not catch up") || !strings.Contains(hint.Of(err), "--catchup-timeout") {
		t.Fatalf("Verify: %v (hint %q), want a catch-up error with a hint", err, hint.Of(err))
	}

	dst.Exec(t, db, `ALTER SUBSCRIPTION verify_sub DISABLE`)
	_, err = Verify(context.Background(), opts, nil)
	if err == nil || !strings.Contains(err.Error(), "disabled") || !strings.Contains(hint.Of(err), "ENABLE") {
		t.Fatalf("Verify with a disabled subscription: %v (hint %q)", err, hint.Of(err))
	}

	// Told not to wait, it compares anyway and reports the difference.
	opts.CatchupTimeout = -1
	rep, err := Verify(context.Background(), opts, nil)
	if err != nil || rep.Identical() || len(rep.Databases[0].Notes) == 0 {
		t.Fatalf("without waiting: err %v, report %+v", err, rep)
	}
}
