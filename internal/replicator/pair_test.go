package replicator_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// Two targets of one source database each own their replication set:
// init, sync and cutover of one never touch the other, which keeps
// streaming.
func TestTwoTargetsStreamSideBySide(t *testing.T) {
	src, a := pgtest.Pair(t)
	b := pgtest.New(t, pgtest.Options{})
	db, _ := src.NewDB(t, a)
	// Runs first (cleanups are LIFO): stop both subscriptions so the
	// source's slots can be dropped with the database.
	t.Cleanup(func() { b.DropDB(db); a.DropDB(db) })
	src.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, v text);
INSERT INTO items SELECT g, 'seed' FROM generate_series(1, 1000) g;`)
	ctx := context.Background()

	initTo := func(dst *pgtest.Cluster) {
		t.Helper()
		code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db, "--yes", "--jobs", "2")
		if code != 0 {
			t.Fatalf("init exit %d\n%s\n%s", code, out, errOut)
		}
	}
	caughtUp := func(dst *pgtest.Cluster, want int) {
		t.Helper()
		n := pairNames(t, dst, db)
		// Close the sessions at once: the later init --drop-existing on B
		// refuses a database other sessions use.
		sc, dc := src.Conn(t, db), dst.Conn(t, db)
		defer sc.Close(ctx)
		defer dc.Close(ctx)
		if err := logical.WaitCaughtUp(ctx, sc, dc, n, 2*time.Minute); err != nil {
			t.Fatalf("wait for %s: %v", n.Subscription, err)
		}
		var got int
		if err := dc.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("target %s has %d rows, want %d", n.Subscription, got, want)
		}
	}
	slotActive := func(dst *pgtest.Cluster) bool {
		t.Helper()
		var active bool
		_ = src.Conn(t, "postgres").QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", pairNames(t, dst, db).Slot).Scan(&active)
		return active
	}

	initTo(a)
	initTo(b)
	if pairNames(t, a, db).Slot == pairNames(t, b, db).Slot {
		t.Fatalf("both targets use slot %s", pairNames(t, a, db).Slot)
	}
	src.Exec(t, db, "INSERT INTO items SELECT g, 'after both inits' FROM generate_series(1001, 1100) g")
	caughtUp(a, 1100)
	caughtUp(b, 1100)

	// status on B sees A's set as another set, and leaves it alone.
	code, out, errOut := runCLI(t, "status", "--source", adminURL(src), "--target", adminURL(b), "--include-databases", db, "-o", "json")
	if code != 0 {
		t.Fatalf("status exit %d\n%s\n%s", code, out, errOut)
	}
	var sts []logical.Status
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	if len(sts) != 1 || sts[0].Slot != pairNames(t, b, db).Slot || len(sts[0].OtherSets) != 1 || sts[0].OtherSets[0].Slot != pairNames(t, a, db).Slot {
		t.Fatalf("status of B does not show B's set and A's as another: %s", out)
	}

	// sync on B (nothing to do) and cutover on B.
	code, out, errOut = runCLI(t, "sync", "--source", adminURL(src), "--target", adminURL(b), "--include-databases", db)
	if code != 0 {
		t.Fatalf("sync exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "cutover", "--source", adminURL(src), "--target", adminURL(b), "--include-databases", db, "--yes", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("cutover exit %d\n%s\n%s", code, out, errOut)
	}
	if slotActive(b) {
		t.Fatal("B's slot survived its cutover")
	}
	// A was never touched: still streaming, and receives new writes.
	if !slotActive(a) {
		t.Fatal("A's slot is no longer active after B's init/sync/cutover")
	}
	src.Exec(t, db, "INSERT INTO items SELECT g, 'after B cut over' FROM generate_series(1101, 1150) g")
	caughtUp(a, 1150)

	// init on B again (a fresh copy) still leaves A streaming.
	code, out, errOut = runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(b), "--include-databases", db, "--yes", "--drop-existing")
	if code != 0 {
		t.Fatalf("second init to B exit %d\n%s\n%s", code, out, errOut)
	}
	src.Exec(t, db, "INSERT INTO items SELECT g, 'after second init' FROM generate_series(1151, 1160) g")
	caughtUp(a, 1160)
	caughtUp(b, 1160)
	if strings.Contains(errOut, pairNames(t, a, db).Slot) {
		t.Fatalf("init to B mentions A's slot:\n%s", errOut)
	}
}
