package logical

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

const testSchema = `
CREATE TABLE items (id bigserial PRIMARY KEY, v text NOT NULL, n int);
CREATE TABLE events (at timestamptz NOT NULL DEFAULT now(), what text);
CREATE SEQUENCE tickets START 100;`

// The slot's exported snapshot splits the rows exactly: what is committed
// before it arrives by the copy, everything after by replication, once.
func TestSnapshotHandoffExactlyOnce(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, testSchema)
	s := src.Conn(t, p.db)
	exec := func(sql string) {
		t.Helper()
		if _, err := s.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO items (v, n) SELECT 'before', g FROM generate_series(1, 200) g;
	      INSERT INTO events (what) SELECT 'before' FROM generate_series(1, 20)`)

	if err := CreatePublication(ctx, s, p.names.Publication, nil); err != nil {
		t.Fatal(err)
	}
	slot, err := CreateSlot(ctx, p.srcURL, p.names.Slot)
	if err != nil {
		t.Fatal(err)
	}
	if slot.SnapshotName() == "" || slot.ConsistentLSN() == "" || slot.Name() != p.names.Slot {
		t.Fatalf("slot = %q %q %q", slot.Name(), slot.SnapshotName(), slot.ConsistentLSN())
	}
	// Committed after the snapshot, before the copy: must come by
	// replication only (never doubled by the copy).
	exec(`INSERT INTO items (v, n) SELECT 'during', g FROM generate_series(1, 50) g;
	      UPDATE items SET v = 'updated-during' WHERE id = 1;
	      DELETE FROM items WHERE id = 2;
	      INSERT INTO events (what) VALUES ('during')`)
	copyAtSnapshot(t, ctx, p, slot.SnapshotName(), "items", "events")
	if err := slot.Close(ctx); err != nil {
		t.Fatal(err)
	}
	d := dst.Conn(t, p.db)
	if err := CreateSubscription(ctx, d, p.names.Subscription, p.srcURL, p.names.Publication, p.names.Slot, SubOptions{}); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO items (v, n) SELECT 'after', g FROM generate_series(1, 30) g;
	      UPDATE items SET n = -n WHERE id % 7 = 0;
	      DELETE FROM items WHERE id % 11 = 0;
	      INSERT INTO events (what) VALUES ('after')`)
	if err := WaitCaughtUp(ctx, s, d, p.names, time.Minute); err != nil {
		t.Fatal(err)
	}
	sameRows(t, ctx, p, "items", "events")

	st, err := GetStatus(ctx, s, d, p.db, p.names)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateStreaming || st.Tables != 2 || len(st.TablesNotReady) != 0 || st.LagBytes == nil {
		t.Errorf("status = %+v", st)
	}

	// Re-running the set-up steps is harmless.
	if err := CreatePublication(ctx, s, p.names.Publication, nil); err != nil {
		t.Errorf("second CreatePublication: %v", err)
	}
	if err := CreateSubscription(ctx, d, p.names.Subscription, p.srcURL, p.names.Publication, p.names.Slot, SubOptions{}); err != nil {
		t.Errorf("second CreateSubscription: %v", err)
	}
	if _, err := CreateSlot(ctx, p.srcURL, p.names.Slot); !errors.Is(err, ErrExists) || hint.Of(err) == "" {
		t.Errorf("second CreateSlot: %v, want ErrExists with a hint", err)
	}
	if err := CreateSubscription(ctx, d, p.names.Subscription, p.srcURL, p.names.Publication, "other_slot", SubOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("CreateSubscription with another slot: %v, want ErrConflict", err)
	}
}

func TestCreateSlotNeedsPublicationFirst(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, testSchema)
	_, err := CreateSlot(ctx, p.srcURL, p.names.Slot)
	if err == nil || !strings.Contains(err.Error(), "before the slot") {
		t.Fatalf("CreateSlot without publication: %v", err)
	}
	var n int
	if err := src.Conn(t, p.db).QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", p.names.Slot).Scan(&n); err != nil || n != 0 {
		t.Fatalf("slots left: %d, %v", n, err)
	}
}

func TestSlotDropLeavesNothing(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, testSchema)
	s := src.Conn(t, p.db)
	if err := CreatePublication(ctx, s, p.names.Publication, []TableSpec{{Schema: "public", Name: "items"}}); err != nil {
		t.Fatal(err)
	}
	slot, err := CreateSlot(ctx, p.srcURL, p.names.Slot)
	if err != nil {
		t.Fatal(err)
	}
	// The failure path: cancelled context, replication connection open.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := slot.Drop(cctx); err != nil {
		t.Fatal(err)
	}
	if info, err := GetSlot(ctx, s, p.names.Slot); err != nil || info != nil {
		t.Fatalf("slot after Drop: %+v, %v", info, err)
	}
}

func TestPublicationDefinitions(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, testSchema)
	s := src.Conn(t, p.db)
	name := p.names.Publication
	items := TableSpec{Schema: "public", Name: "items", RowFilter: "id > 10"}
	if err := CreatePublication(ctx, s, name, []TableSpec{items}); err != nil {
		t.Fatal(err)
	}
	if err := CreatePublication(ctx, s, name, []TableSpec{items}); err != nil {
		t.Errorf("same definition again: %v", err)
	}
	for _, other := range [][]TableSpec{
		{{Schema: "public", Name: "items", RowFilter: "id > 11"}},
		{{Schema: "public", Name: "items"}},
		{items, {Schema: "public", Name: "events"}},
		nil,
	} {
		err := CreatePublication(ctx, s, name, other)
		if !errors.Is(err, ErrConflict) || hint.Of(err) == "" {
			t.Errorf("CreatePublication(%v) over another definition: %v, want ErrConflict with hint", other, err)
		}
	}
	if err := DropPublication(ctx, s, name); err != nil {
		t.Fatal(err)
	}
	if err := DropPublication(ctx, s, name); err != nil {
		t.Errorf("dropping twice: %v", err)
	}

	// A row filter on a column outside the replica identity would make
	// UPDATE and DELETE fail on the source: refused, nothing created.
	err := CreatePublication(ctx, s, name, []TableSpec{{Schema: "public", Name: "items", RowFilter: "v <> 'x'"}})
	if err == nil || !strings.Contains(hint.Of(err), "REPLICA IDENTITY FULL") {
		t.Errorf("row filter outside replica identity: %v (hint %q)", err, hint.Of(err))
	}
	if ok, _ := PublicationExists(ctx, s, name); ok {
		t.Error("publication created despite the refused filter")
	}
	if _, err := s.Exec(ctx, "UPDATE items SET v = v"); err != nil {
		t.Errorf("source writes broken: %v", err)
	}

	// The selection rules' time filter is frozen to a constant.
	src.Exec(t, p.db, "ALTER TABLE events REPLICA IDENTITY FULL")
	// Built by the selection rules exactly as init and sync get it.
	rules, err := selection.Build(selection.Flags{TimeFilters: []string{p.db + ".events:at:6 months"}})
	if err != nil {
		t.Fatal(err)
	}
	ev := TableSpec{Schema: "public", Name: "events", RowFilter: rules.Table(p.db, "public", "events").Predicate}
	if !strings.Contains(ev.RowFilter, "now()") {
		t.Fatalf("selection predicate = %q", ev.RowFilter)
	}
	if err := CreatePublication(ctx, s, name, []TableSpec{ev}); err != nil {
		t.Fatalf("time filter: %v", err)
	}
	var filter string
	if err := s.QueryRow(ctx, "SELECT rowfilter FROM pg_publication_tables WHERE pubname = $1", name).Scan(&filter); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(filter, "now()") || !strings.Contains(filter, "timestamp with time zone") {
		t.Errorf("frozen filter = %s", filter)
	}
	if err := CreatePublication(ctx, s, name, []TableSpec{ev}); err != nil {
		t.Errorf("time filter again (same day): %v", err)
	}
	// A user's own mutable predicate gets a hint instead of a bare error.
	err = CreatePublication(ctx, s, "seren_other", []TableSpec{{Schema: "public", Name: "events", RowFilter: "at > current_date"}})
	if err == nil || !strings.Contains(hint.Of(err), "immutable") {
		t.Errorf("mutable filter: %v (hint %q)", err, hint.Of(err))
	}
	if err := DropPublication(ctx, s, name); err != nil {
		t.Fatal(err)
	}
}

// The subscription's connection string never leaks the password, not even
// in the error when the target cannot reach the source.
func TestSubscriptionErrorsHidePassword(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, testSchema)
	// Port 1 on the loopback: nothing listens there.
	bad := mustURL(t, fmt.Sprintf("postgres://postgres:%s@127.0.0.1:1/%s?sslmode=disable", src.Password, p.db))
	d := dst.Conn(t, p.db)
	err := CreateSubscription(ctx, d, p.names.Subscription, bad, p.names.Publication, p.names.Slot, SubOptions{})
	if err == nil {
		t.Fatal("subscription to an unreachable source succeeded")
	}
	if strings.Contains(err.Error(), src.Password) || strings.Contains(hint.Of(err), src.Password) {
		t.Fatalf("password leaked: %v", err)
	}
	if hint.Of(err) == "" {
		t.Errorf("no hint: %v", err)
	}
	err = CreateSubscription(ctx, d, p.names.Subscription, p.srcURL, p.names.Publication, p.names.Slot,
		SubOptions{User: "postgres", Password: "Sentinel-Pa55"})
	if err == nil || strings.Contains(err.Error(), "Sentinel-Pa55") {
		t.Fatalf("wrong role password: %v", err)
	}
}
