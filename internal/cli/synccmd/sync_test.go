package synccmd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func runSync(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	cmd := New(ios)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// copied creates db with the same rows on both sides (a copy made "by
// hand") and tears our replication objects down at the end.
func copied(t *testing.T) (db string, src, dst *pgtest.Cluster) {
	t.Helper()
	src, dst = pgtest.Pair(t)
	db, _ = src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	sql := `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g;`
	src.Exec(t, db, sql)
	dst.Exec(t, db, sql)
	t.Cleanup(func() {
		ctx := context.Background()
		s, err := pgx.Connect(ctx, src.URL(db).Secret())
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close(ctx)
		d, err := pgx.Connect(ctx, dst.URL(db).Secret())
		if err != nil {
			t.Error(err)
			return
		}
		defer d.Close(ctx)
		if err := logical.Teardown(ctx, s, d, pairNames(t, dst, db)); err != nil {
			t.Error(err)
		}
	})
	return db, src, dst
}

func waitRow(t *testing.T, src, dst *pgtest.Cluster, db string, id int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := logical.WaitCaughtUp(ctx, src.Conn(t, db), dst.Conn(t, db), pairNames(t, dst, db), time.Minute); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := dst.Conn(t, db).QueryRow(ctx, "SELECT count(*) FROM items WHERE id = $1", id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("row %d on target: %d, %v", id, n, err)
	}
}

func TestSyncSetsUpRerunsAndRefusesWhatNeedsACopy(t *testing.T) {
	db, src, dst := copied(t)
	base := []string{"--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db}

	out, errOut, err := runSync(t, append(base, "-o", "json")...)
	if err != nil {
		t.Fatalf("sync: %v\n%s", err, errOut)
	}
	var res []logical.SyncResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 || res[0].Action != logical.SyncCreated || res[0].StartLSN == "" {
		t.Fatalf("json = %s (%v)", out, err)
	}
	if !strings.Contains(errOut, "note: replication starts from the source's current position") {
		t.Errorf("no consistency note: %s", errOut)
	}
	if strings.Contains(out+errOut, src.Password) {
		t.Fatal("password printed")
	}
	src.Exec(t, db, "INSERT INTO items VALUES (101, 'new')")
	waitRow(t, src, dst, db, 101)

	// Re-running is harmless.
	out, errOut, err = runSync(t, base...)
	if err != nil || !strings.Contains(out, "unchanged") {
		t.Fatalf("rerun: %v\n%s%s", err, out, errOut)
	}
	// A disabled subscription is re-enabled.
	n := pairNames(t, dst, db)
	dst.Exec(t, db, "ALTER SUBSCRIPTION "+pg.Ident(n.Subscription)+" DISABLE")
	out, errOut, err = runSync(t, base...)
	if err != nil || !strings.Contains(out, "repaired") {
		t.Fatalf("repair: %v\n%s%s", err, out, errOut)
	}
	src.Exec(t, db, "INSERT INTO items VALUES (102, 'after repair')")
	waitRow(t, src, dst, db, 102)

	// The subscription vanished but the slot stayed: where the target
	// stopped is unknown, so sync says it needs a fresh copy.
	dst.Exec(t, db, "ALTER SUBSCRIPTION "+pg.Ident(n.Subscription)+" DISABLE")
	dst.Exec(t, db, "ALTER SUBSCRIPTION "+pg.Ident(n.Subscription)+" SET (slot_name = NONE)")
	dst.Exec(t, db, "DROP SUBSCRIPTION "+pg.Ident(n.Subscription))
	_, _, err = runSync(t, base...)
	if !errors.Is(err, logical.ErrNeedsCopy) || !strings.Contains(hint.Of(err), "--force") {
		t.Fatalf("slot without subscription: %v (hint %q)", err, hint.Of(err))
	}
	// --force without a terminal needs --yes.
	if _, _, err = runSync(t, append(base, "--force")...); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("--force without --yes: %v", err)
	}
	out, errOut, err = runSync(t, append(base, "--force", "--yes")...)
	if err != nil || !strings.Contains(out, "recreated") {
		t.Fatalf("--force: %v\n%s%s", err, out, errOut)
	}
	src.Exec(t, db, "INSERT INTO items VALUES (103, 'after force')")
	waitRow(t, src, dst, db, 103)
}

func TestSyncRefusesAnEmptyTarget(t *testing.T) {
	db, src, dst := copied(t)
	dst.Exec(t, db, "TRUNCATE items")
	_, _, err := runSync(t, "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db)
	if !errors.Is(err, logical.ErrNeedsCopy) || !strings.Contains(err.Error(), "table public.items") || !strings.Contains(hint.Of(err), "init") {
		t.Fatalf("empty target table: %v (hint %q)", err, hint.Of(err))
	}
	var n int
	if err := src.Conn(t, db).QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", pairNames(t, dst, db).Slot).Scan(&n); err != nil || n != 0 {
		t.Fatalf("slot left behind: %d %v", n, err)
	}
}

func TestSubscriptionFlags(t *testing.T) {
	cases := []struct {
		f       cmdutil.SubFlags
		env     string
		wantErr string
	}{
		{cmdutil.SubFlags{PasswordMode: "inline"}, "", ""},
		{cmdutil.SubFlags{PasswordMode: "passfile", Passfile: "/x"}, "", ""},
		{cmdutil.SubFlags{PasswordMode: "plain"}, "", "not one of"},
		{cmdutil.SubFlags{PasswordMode: "inline", Passfile: "/x"}, "", "needs --subscription-password passfile"},
		{cmdutil.SubFlags{PasswordMode: "inline", User: "repl"}, "", cmdutil.PasswordEnv},
		{cmdutil.SubFlags{PasswordMode: "inline", User: "repl"}, "pw", ""},
		{cmdutil.SubFlags{PasswordMode: "passfile", User: "repl"}, "", ""},
	}
	for _, c := range cases {
		t.Setenv(cmdutil.PasswordEnv, c.env)
		o, err := c.f.Options()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", c.f, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%+v: error %v, want %q", c.f, err, c.wantErr)
		case err == nil && c.f.User != "" && o.Password != c.env:
			t.Errorf("%+v: password not taken from env", c.f)
		}
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
