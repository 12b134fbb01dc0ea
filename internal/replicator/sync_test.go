package replicator_test

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/dbcompare"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// writer changes the source continuously until stopped: inserts, updates
// and deletes on a keyed table, inserts on a key-less one.
func writer(t *testing.T, ctx context.Context, c *pgtest.Cluster, db string, ops *atomic.Int64) {
	conn, err := pgx.Connect(ctx, c.URL(db).Secret())
	if err != nil {
		t.Errorf("writer: %v", err)
		return
	}
	defer conn.Close(context.Background())
	r := rand.New(rand.NewSource(1))
	for ctx.Err() == nil {
		var q string
		switch r.Intn(4) {
		case 0:
			q = "INSERT INTO accounts (balance, note) VALUES (100, 'new')"
		case 1:
			q = fmt.Sprintf("UPDATE accounts SET balance = balance + 1, note = 'upd' WHERE id = %d", 1+r.Intn(200000))
		case 2:
			q = fmt.Sprintf("DELETE FROM accounts WHERE id = %d", 1+r.Intn(200000))
		case 3:
			q = "INSERT INTO audit (what, at) VALUES ('tick', clock_timestamp())"
		}
		if _, err := conn.Exec(ctx, q); err != nil {
			if ctx.Err() != nil {
				return
			}
			t.Errorf("writer: %v", err)
			return
		}
		ops.Add(1)
	}
}

func rowsOnly(s dbcompare.Snapshot) dbcompare.Snapshot {
	var out dbcompare.Snapshot
	for _, l := range s {
		if strings.HasPrefix(l, "rows ") {
			out = append(out, l)
		}
	}
	return out
}

func TestInitHandsOffToSyncWithoutGapOrDuplicate(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `
CREATE TABLE accounts (id bigserial PRIMARY KEY, balance numeric NOT NULL, note text);
INSERT INTO accounts (balance, note) SELECT g, 'seed' FROM generate_series(1, 200000) g;
CREATE TABLE audit (what text, at timestamptz);
INSERT INTO audit SELECT 'seed', now() FROM generate_series(1, 50000);`)

	ctx, stop := context.WithCancel(context.Background())
	var ops atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); writer(t, ctx, src, db, &ops) }()

	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--yes", "--jobs", "2", "--split-table-bytes", "2000000")
	if code != 0 {
		stop()
		wg.Wait()
		t.Fatalf("init exit %d\n%s\n%s", code, out, errOut)
	}
	before := ops.Load()
	// Keep writing for a while after the hand-off.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ops.Load() < before+300 {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if ops.Load() < 100 {
		t.Fatalf("the writer made only %d changes; the test proves nothing", ops.Load())
	}
	t.Logf("%d changes on the source during and after init (%d during)", ops.Load(), before)

	s, d := src.Conn(t, db), dst.Conn(t, db)
	if err := logical.WaitCaughtUp(context.Background(), s, d, pairNames(t, dst, db), time.Minute); err != nil {
		t.Fatalf("wait for zero lag: %v", err)
	}
	a, err := dbcompare.Take(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dbcompare.Take(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if diff := dbcompare.Diff(rowsOnly(a), rowsOnly(b)); diff != "" {
		t.Fatalf("rows differ after sync caught up:\n%s", diff)
	}
	// The product's own verify agrees.
	code, out, errOut = runCLI(t, "verify", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db)
	if code != 0 {
		t.Fatalf("verify exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestFailedInitDropsItsSlot(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;`)
	// The row filter is valid SQL but fails while the rows are copied.
	code, _, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--yes", "--table-filter", db+".t:1 / (id - id) = 1")
	if code == 0 {
		t.Fatal("init succeeded; want a failure during the copy")
	}
	if !strings.Contains(errOut, "division by zero") {
		t.Fatalf("error does not say what failed:\n%s", errOut)
	}
	var slots int
	if err := src.Conn(t, "postgres").QueryRow(context.Background(),
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", pairNames(t, dst, db).Slot).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if slots != 0 {
		t.Fatalf("the failed init left its replication slot on the source")
	}
}

// pairNames are the replication object names of db copied to dst.
func pairNames(t testing.TB, dst *pgtest.Cluster, db string) logical.ObjectNames {
	t.Helper()
	n, err := logical.ResolveNames(context.Background(), dst.URL(db), nil, db)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
