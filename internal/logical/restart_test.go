package logical

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// writer inserts, updates and deletes on the source until stopped, and
// counts its committed transactions.
type writer struct {
	done  chan struct{}
	stop  chan struct{}
	count atomic.Int64
	err   error
}

func startWriter(t *testing.T, ctx context.Context, c *pgtest.Cluster, db string) *writer {
	t.Helper()
	w := &writer{done: make(chan struct{}), stop: make(chan struct{})}
	conn, err := pgx.Connect(ctx, c.URL(db).Secret())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		defer conn.Close(context.Background())
		for i := 1; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			_, err := conn.Exec(ctx, fmt.Sprintf(`
INSERT INTO items (v, n) VALUES ('w%[1]d', %[1]d), ('w%[1]d-b', %[1]d);
UPDATE items SET n = n + 1 WHERE id = (SELECT max(id) - 3 FROM items);
DELETE FROM items WHERE id = (SELECT max(id) - 5 FROM items) AND %[1]d %% 3 = 0;
INSERT INTO events (what) VALUES ('w%[1]d');`, i))
			if err != nil {
				w.err = err
				return
			}
			w.count.Add(1)
		}
	}()
	return w
}

// waitFor blocks until the writer has committed n more transactions.
func (w *writer) waitFor(t *testing.T, n int64) {
	t.Helper()
	target := w.count.Load() + n
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for w.count.Load() < target {
		select {
		case <-w.done:
			t.Fatalf("writer stopped: %v", w.err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatal("writer too slow")
		}
	}
}

func (w *writer) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
}

// Stop the target while it streams, keep writing, start it again: the
// subscription resumes from the slot and nothing is lost or doubled.
func TestTargetRestartLosesNothing(t *testing.T) {
	ctx := testCtx(t)
	src, _ := pgtest.Pair(t)
	target := pgtest.New(t, pgtest.Options{})
	p := newSyncPair(t, src, target, testSchema)
	s := src.Conn(t, p.db)
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
	d, err := pgx.Connect(ctx, p.dstURL.Secret())
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateSubscription(ctx, d, p.names.Subscription, p.srcURL, p.names.Publication, p.names.Slot, SubOptions{}); err != nil {
		t.Fatal(err)
	}
	d.Close(ctx)

	w := startWriter(t, ctx, src, p.db)
	w.waitFor(t, 50)
	if err := target.Stop(); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 200) // all of these while the target is down
	if info, err := GetSlot(ctx, s, p.names.Slot); err != nil || info == nil {
		t.Fatalf("slot while target down: %+v %v", info, err)
	}
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 50)
	w.finish(t)

	d = target.Conn(t, p.db)
	if err := WaitCaughtUp(ctx, s, d, p.names, 2*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, target.Log())
	}
	sameRows(t, ctx, p, "items", "events")
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || int64(n) != w.count.Load() {
		t.Errorf("target has %d events, the writer committed %d (%v)", n, w.count.Load(), err)
	}
}
