package logical

import (
	"context"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestStatusReadsTheLeaderApplyWorker: from PostgreSQL 16 a subscription
// may run parallel apply workers (18 makes streaming = parallel the
// default); they appear in pg_stat_subscription with relid NULL like the
// leader, but carry no LSNs. status must report the leader.
func TestStatusReadsTheLeaderApplyWorker(t *testing.T) {
	ctx := testCtx(t)
	src := pgtest.New(t, pgtest.Options{Major: 16, Settings: []string{"logical_decoding_work_mem = '64kB'", "shared_buffers = 32MB"}})
	dst := pgtest.New(t, pgtest.Options{Major: 18, Settings: []string{"shared_buffers = 32MB"}})
	p := newSyncPair(t, src, dst, "CREATE TABLE big (id int PRIMARY KEY, v text)")
	s, d := src.Conn(t, p.db), dst.Conn(t, p.db)
	if err := CreatePublication(ctx, s, p.names.Publication, nil); err != nil {
		t.Fatal(err)
	}
	slot, err := CreateSlot(ctx, p.srcURL, p.names.Slot)
	if err != nil {
		t.Fatal(err)
	}
	if err := slot.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := CreateSubscription(ctx, d, p.names.Subscription, p.srcURL, p.names.Publication, p.names.Slot, SubOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WaitCaughtUp(ctx, s, d, p.names, time.Minute); err != nil {
		t.Fatal(err)
	}
	// A transaction too big for logical_decoding_work_mem, left open: it is
	// streamed to a parallel apply worker.
	tx, err := src.Conn(t, p.db).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	if _, err := tx.Exec(ctx, "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	var leader int
	deadline := time.Now().Add(time.Minute)
	for {
		rows, _ := d.Query(ctx, "SELECT pid, coalesce(leader_pid, 0), received_lsn IS NOT NULL FROM pg_stat_subscription WHERE subname = $1 AND relid IS NULL ORDER BY pid", p.names.Subscription)
		var n int
		for rows.Next() {
			var pid, lp int
			var recv bool
			_ = rows.Scan(&pid, &lp, &recv)
			t.Logf("worker pid %d leader_pid %d received_lsn set %v", pid, lp, recv)
			if lp == 0 {
				leader = pid
			}
			n++
		}
		rows.Close()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no parallel apply worker started")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		st, err := GetStatus(ctx, s, d, p.db, p.names)
		if err != nil {
			t.Fatal(err)
		}
		if st.WorkerPID != leader || st.ReceivedLSN == "" {
			t.Fatalf("status reports worker %d (received LSN %q), want the leader apply worker %d", st.WorkerPID, st.ReceivedLSN, leader)
		}
	}
}
