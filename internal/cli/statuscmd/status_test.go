package statuscmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// syncing sets up replication of a one-table database.
func syncing(t *testing.T, src, dst *pgtest.Cluster) string {
	t.Helper()
	db, _ := src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	src.Exec(t, db, "CREATE TABLE items (id int PRIMARY KEY)")
	dst.Exec(t, db, "CREATE TABLE items (id int PRIMARY KEY)")
	ctx := context.Background()
	t.Cleanup(func() {
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
	if err := logical.WaitCaughtUp(ctx, src.Conn(t, db), dst.Conn(t, db), pairNames(t, dst, db), time.Minute); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestStatus(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db := syncing(t, src, dst)
	bare, _ := src.NewDB(t) // selected, but nothing set up and no target database
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newOpts := func() (*Options, *bytes.Buffer) {
		ios, _, out, _ := iostreams.Test()
		o := &Options{IO: ios, Interval: 100 * time.Millisecond}
		o.Conn.Source, o.Conn.Target = src.URL("postgres").Secret(), dst.URL("postgres").Secret()
		o.Selection.IncludeDatabases = []string{db, bare}
		return o, out
	}

	o, buf := newOpts()
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "DATABASE") {
		t.Fatalf("no header:\n%s", out)
	}
	for _, want := range []string{db + "  ", "streaming", bare + "  ", "not-set-up", "the target database does not exist: run init"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	o, buf = newOpts()
	o.Output.Format = "json"
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	var sts []logical.Status
	if err := json.Unmarshal(buf.Bytes(), &sts); err != nil {
		t.Fatal(err)
	}
	if len(sts) != 2 || sts[0].Database != db || sts[0].State != logical.StateStreaming || sts[0].LagBytes == nil ||
		sts[0].Tables != 1 || sts[0].ConfirmedLSN == "" || sts[1].State != logical.StateNone {
		t.Errorf("json = %+v", sts)
	}

	// --watch refreshes (stopped after 3 refreshes here, by Ctrl-C normally).
	o, buf = newOpts()
	o.Watch, o.Refreshes, o.Output.Format = true, 3, "json"
	if err := run(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(strings.TrimSpace(buf.String()), "\n") + 1; got != 3 {
		t.Errorf("--watch printed %d documents, want 3", got)
	}
}

func TestFormat(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	for _, c := range []struct {
		in   *int64
		want string
	}{{nil, "-"}, {i(0), "0 B"}, {i(1023), "1023 B"}, {i(1536), "1.5 kB"}, {i(5 << 20), "5 MB"}} {
		if got := humanBytes(c.in); got != c.want {
			t.Errorf("humanBytes(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	f := 2.345
	if got := seconds(&f); got != "2.3s" {
		t.Errorf("seconds = %q", got)
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
