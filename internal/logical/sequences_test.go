package logical

import (
	"slices"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestCopySequences(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, `
CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, x int);
CREATE SEQUENCE "Odd ""Name" INCREMENT -1 MINVALUE -1000 MAXVALUE 0 START 0;
CREATE SEQUENCE unused;
CREATE SEQUENCE ahead;`)
	src.Exec(t, p.db, `
CREATE SEQUENCE only_on_source;
INSERT INTO orders (x) SELECT g FROM generate_series(1, 42) g;
SELECT nextval('"Odd ""Name"'), nextval('"Odd ""Name"'), nextval('"Odd ""Name"');
SELECT setval('ahead', 10);`)
	dst.Exec(t, p.db, `SELECT setval('ahead', 500)`)

	s, d := src.Conn(t, p.db), dst.Conn(t, p.db)
	res, err := CopySequences(ctx, s, d)
	if err != nil {
		t.Fatal(err)
	}
	if res.Copied != 3 || !slices.Equal(res.Kept, []string{"public.ahead"}) || !slices.Equal(res.Missing, []string{"public.only_on_source"}) {
		t.Errorf("result = %+v", res)
	}
	check := func(seq string, want int64) {
		t.Helper()
		var got int64
		if err := d.QueryRow(ctx, "SELECT nextval($1::regclass)", seq).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("next value of %s on target = %d, want %d", seq, got, want)
		}
	}
	check("orders_id_seq", 43)
	check(`"Odd ""Name"`, -3)
	check("unused", 1)
	check("ahead", 501)
}

func TestTeardownIsIdempotent(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	p := newSyncPair(t, src, dst, testSchema)
	s, d := src.Conn(t, p.db), dst.Conn(t, p.db)
	// Nothing exists yet: fine.
	if err := Teardown(ctx, s, d, p.names); err != nil {
		t.Fatal(err)
	}
	if err := CreatePublication(ctx, s, p.names.Publication, nil); err != nil {
		t.Fatal(err)
	}
	slot, err := CreateSlot(ctx, p.srcURL, p.names.Slot)
	if err != nil {
		t.Fatal(err)
	}
	slot.Close(ctx)
	if err := CreateSubscription(ctx, d, p.names.Subscription, p.srcURL, p.names.Publication, p.names.Slot, SubOptions{}); err != nil {
		t.Fatal(err)
	}
	// Streaming: the slot is held by a WAL sender until the subscription goes.
	if err := WaitCaughtUp(ctx, s, d, p.names, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(ctx, s, d, p.names); err != nil {
		t.Fatal(err)
	}
	if err := Teardown(ctx, s, nil, p.names); err != nil {
		t.Fatal(err)
	}
	st, err := GetStatus(ctx, s, d, p.db, p.names)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateNone {
		t.Errorf("state after teardown = %s", st.State)
	}
	var n int
	if err := s.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1) + (SELECT count(*) FROM pg_publication WHERE pubname = $1)", p.names.Slot).Scan(&n); err != nil || n != 0 {
		t.Errorf("left on the source: %d (%v)", n, err)
	}
}
