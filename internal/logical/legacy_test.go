package logical

import (
	"context"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// A set created before pair naming (one hash, named after the source
// database alone) is still found for its pair by sync, status and
// cutover.
func TestLegacySetIsFoundForItsPair(t *testing.T) {
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	old := legacyNames(p.db)
	p.names = old // torn down at the end
	ctx := context.Background()
	s, d := src.Conn(t, p.db), dst.Conn(t, p.db)
	specs, err := PublicationTables(ctx, s, p.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := CreatePublication(ctx, s, old.Publication, specs); err != nil {
		t.Fatal(err)
	}
	slot, err := CreateSlot(ctx, p.srcURL, old.Slot)
	if err != nil {
		t.Fatal(err)
	}
	if err := slot.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := CreateSubscription(ctx, d, old.Subscription, p.srcURL, old.Publication, old.Slot, SubOptions{}); err != nil {
		t.Fatal(err)
	}

	n, err := ResolveNames(ctx, p.dstURL, d, p.db)
	if err != nil || n != old {
		t.Fatalf("ResolveNames = %v, %v; want the legacy set %s", n, err, old.Slot)
	}
	res, err := SyncDatabase(ctx, p.srcURL, p.dstURL, p.db, SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ObjectNames != old || res.Action == SyncCreated || res.Action == SyncRecreated {
		t.Fatalf("sync did %s with %s; want the legacy set kept", res.Action, res.Slot)
	}
	src.Exec(t, p.db, "INSERT INTO t VALUES (1, 'after')")
	if err := WaitCaughtUp(ctx, s, d, old, time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err := GetStatus(ctx, s, d, p.db, n)
	if err != nil || st.State != StateStreaming {
		t.Fatalf("status %+v, %v; want streaming", st, err)
	}
	cr, err := Cutover(ctx, s, d, p.db, time.Minute, time.Now)
	if err != nil || cr.NothingToDo {
		t.Fatalf("cutover %+v, %v; want the legacy set torn down", cr, err)
	}
	if sl, err := GetSlot(ctx, s, old.Slot); err != nil || sl != nil {
		t.Fatalf("legacy slot after cutover: %+v, %v", sl, err)
	}
}
