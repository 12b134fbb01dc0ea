package cutovercmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

const schema = `
CREATE TABLE orders (id bigserial PRIMARY KEY, item text);
CREATE TABLE audit (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text);
CREATE SEQUENCE invoice_no START 1000;`

// syncing creates db on both sides and sets up sync; the test's cleanup
// removes whatever of ours is left.
func syncing(t *testing.T) (db string, src, dst *pgtest.Cluster) {
	t.Helper()
	src, dst = pgtest.Pair(t)
	db, _ = src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	src.Exec(t, db, schema)
	dst.Exec(t, db, schema)
	ctx := context.Background()
	t.Cleanup(func() {
		src.Exec(t, "postgres", "ALTER DATABASE "+pg.Ident(db)+" RESET default_transaction_read_only")
		s, _ := pgx.Connect(ctx, src.URL(db).Secret())
		d, _ := pgx.Connect(ctx, dst.URL(db).Secret())
		if err := logical.Teardown(ctx, s, d, pairNames(t, dst, db)); err != nil {
			t.Error(err)
		}
		s.Close(ctx)
		d.Close(ctx)
	})
	if _, err := logical.SyncDatabase(ctx, src.URL(db), dst.URL(db), db, logical.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	return db, src, dst
}

type runOut struct {
	out, errOut *bytes.Buffer
	err         error
}

func runCutover(t *testing.T, tty bool, args ...string) runOut {
	t.Helper()
	ios, in, out, errOut := iostreams.Test()
	ios.SetTTY(tty)
	in.WriteString("y\n")
	cmd := New(ios)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return runOut{out, errOut, cmd.ExecuteContext(ctx)}
}

func count(t *testing.T, c *pgtest.Cluster, db, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := c.Conn(t, db).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCutoverLeavesNothingAndCopiesSequences(t *testing.T) {
	db, src, dst := syncing(t)
	args := []string{"--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db}
	src.Exec(t, db, `INSERT INTO orders (item) SELECT 'o' || g FROM generate_series(1, 500) g;
INSERT INTO audit (what) SELECT 'a' FROM generate_series(1, 77) g;
SELECT nextval('invoice_no') FROM generate_series(1, 5);`)

	// --dry-run changes nothing.
	r := runCutover(t, false, append(args, "--dry-run")...)
	if r.err != nil {
		t.Fatalf("dry run: %v\n%s", r.err, r.errOut)
	}
	for _, want := range []string{"Dry run: nothing is changed", "copy sequence values", "would drop subscription " + pairNames(t, dst, db).Subscription} {
		if !strings.Contains(r.out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, r.out)
		}
	}
	if n := count(t, src, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", pairNames(t, dst, db).Slot); n != 1 {
		t.Fatalf("dry run dropped the slot")
	}
	// No terminal, no --yes: refuse and name the flag.
	if r := runCutover(t, false, args...); r.err == nil || !strings.Contains(r.err.Error(), "--yes") {
		t.Fatalf("without --yes: %v", r.err)
	}

	// A session that keeps writing is ended by --block-writes.
	ctx := context.Background()
	app, err := pgx.Connect(ctx, src.URL(db).Secret())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)

	r = runCutover(t, true, append(args, "--block-writes", "--timeout", "1m", "-o", "json")...)
	if r.err != nil {
		t.Fatalf("cutover: %v\n%s", r.err, r.errOut)
	}
	var res []Result
	if err := json.Unmarshal(r.out.Bytes(), &res); err != nil || len(res) != 1 || res[0].SequencesCopied != 3 || !res[0].WritesBlocked {
		t.Fatalf("json: %v\n%s", err, r.out)
	}
	if strings.Contains(r.out.String()+r.errOut.String(), src.Password) {
		t.Fatal("password printed")
	}

	// Nothing of ours on the source (no WAL retained), nothing on the target.
	if n := count(t, src, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'seren\\_%'"); n != 0 {
		t.Errorf("%d slots of ours left on the source", n)
	}
	if n := count(t, src, db, "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'seren\\_%'"); n != 0 {
		t.Errorf("%d publications of ours left on the source", n)
	}
	if n := count(t, dst, db, "SELECT count(*) FROM pg_subscription WHERE subname LIKE 'seren\\_%'"); n != 0 {
		t.Errorf("%d subscriptions left on the target", n)
	}
	// Every row arrived, and the target's sequences are at least the source's.
	if a, b := count(t, src, db, "SELECT count(*) FROM orders"), count(t, dst, db, "SELECT count(*) FROM orders"); a != b || a != 500 {
		t.Errorf("orders: source %d, target %d", a, b)
	}
	for _, seq := range []string{"orders_id_seq", "audit_id_seq", "invoice_no"} {
		s := count(t, src, db, "SELECT last_value FROM "+seq)
		d := count(t, dst, db, "SELECT nextval($1::regclass)", seq)
		if d <= s {
			t.Errorf("sequence %s: target hands out %d, source is at %d", seq, d, s)
		}
	}
	// The old application session was ended; new sessions are read-only.
	if _, err := app.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the application's session survived --block-writes")
	}
	w, err := pgx.Connect(ctx, src.URL(db).Secret())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	_, err = w.Exec(ctx, "INSERT INTO orders (item) VALUES ('late')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Errorf("write to the source after cutover: %v, want read-only error", err)
	}

	// Running it again finds nothing to do.
	r = runCutover(t, false, append(args, "--yes")...)
	if r.err != nil || !strings.Contains(r.out.String(), "nothing to cut over") {
		t.Errorf("second cutover: %v\n%s", r.err, r.out)
	}
}

// A subscription that cannot catch up makes cutover fail after --timeout,
// and writes blocked for it are allowed again.
func TestCutoverTimeoutUnblocks(t *testing.T) {
	db, src, dst := syncing(t)
	n := pairNames(t, dst, db)
	// Stall the subscriber (the slot stays active until its sender exits).
	dst.Exec(t, db, "ALTER SUBSCRIPTION "+pg.Ident(n.Subscription)+" DISABLE")
	src.Exec(t, db, "INSERT INTO orders (item) VALUES ('unapplied')")
	r := runCutover(t, false, "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(),
		"--include-databases", db, "--block-writes", "--timeout", "2s", "--yes")
	if r.err == nil {
		t.Fatal("cutover succeeded with a disabled subscription")
	}
	if !strings.Contains(r.errOut.String(), "writes to the source allowed again") {
		t.Errorf("stderr:\n%s", r.errOut)
	}
	if n := count(t, src, "postgres", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", n.Slot); n != 1 {
		t.Error("the slot was dropped although cutover failed")
	}
	if got := count(t, src, "postgres", `SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
WHERE d.datname = $1 AND 'default_transaction_read_only=on' = ANY(s.setconfig)`, db); got != 0 {
		t.Error("source still read-only after a failed cutover")
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
