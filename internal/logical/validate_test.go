package logical

import (
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// find returns the problems whose object contains obj.
func find(ps []Problem, obj string) []Problem {
	var out []Problem
	for _, p := range ps {
		if strings.Contains(p.Object, obj) {
			out = append(out, p)
		}
	}
	return out
}

func TestValidateMisconfiguredSource(t *testing.T) {
	ctx := testCtx(t)
	_, dst := pgtest.Pair(t)
	bad := pgtest.New(t, pgtest.Options{Settings: []string{"wal_level = replica", "max_replication_slots = 1"}})
	db, _ := bad.NewDB(t)
	bad.Exec(t, db, `
CREATE TABLE keyed (id int PRIMARY KEY, at timestamptz, v text);
CREATE TABLE keyless (v text, at timestamptz);
CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
CREATE SEQUENCE counter;
SELECT lo_create(0);
CREATE EXTENSION IF NOT EXISTS pg_trgm;`)
	bad.Exec(t, "postgres", "SELECT pg_create_physical_replication_slot('occupied')")

	rules, err := selection.Build(selection.Flags{
		IncludeDatabases: []string{db},
		TableFilters:     []string{db + ".keyed:id > 100"},
		TimeFilters:      []string{db + ".keyless:at:6 months"}, // outside the (missing) replica identity
	})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := Validate(ctx, ValidateOptions{Source: bad.URL("postgres"), Target: dst.URL("postgres"), Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		t.Logf("%s %s %s %s: %s\n  fix: %s", p.Severity, p.Server, p.Database, p.Object, p.Message, p.Fix)
		if p.Fix == "" || p.Message == "" {
			t.Errorf("problem without message or fix: %+v", p)
		}
	}
	if !HasBlocker(ps) {
		t.Fatal("no blocker reported")
	}
	want := []struct {
		obj  string
		sev  Severity
		fix  string
		text string
	}{
		{"wal_level", Blocker, "ALTER SYSTEM SET wal_level = logical", "replica"},
		{"max_replication_slots", Blocker, "pg_drop_replication_slot('occupied')", "0 free"},
		{"table public.keyless", Warning, `ALTER TABLE "public"."keyless" REPLICA IDENTITY FULL;`, "UPDATE and DELETE"},
		{"table public.scratch", Warning, "SET LOGGED", "unlogged"},
		{"sequences", Warning, "cutover", "1 sequence"},
		{"large objects", Warning, "bytea", "1 large object"},
	}
	for _, w := range want {
		got := find(ps, w.obj)
		ok := false
		for _, p := range got {
			ok = ok || (p.Severity == w.sev && strings.Contains(p.Fix, w.fix) && strings.Contains(p.Message, w.text))
		}
		if !ok {
			t.Errorf("no %s about %q with fix containing %q and message containing %q; got %+v", w.sev, w.obj, w.fix, w.text, got)
		}
	}
	if got := find(ps, "table public.keyed"); len(got) != 0 {
		t.Errorf("the keyed table with a key filter is fine, got %+v", got)
	}
	// A filter on a table without replica identity is a blocker too.
	if got := find(ps, "table public.keyless"); len(got) != 2 {
		t.Errorf("want the key-less table's filter problem too, got %+v", got)
	}
	// Blockers first.
	for i := 1; i < len(ps); i++ {
		if ps[i-1].Severity == Warning && ps[i].Severity == Blocker {
			t.Errorf("blocker after warning at %d", i)
		}
	}

	// Copy only: replication prerequisites do not apply.
	ps, err = Validate(ctx, ValidateOptions{Source: bad.URL("postgres"), Target: dst.URL("postgres"), Rules: rules, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if HasBlocker(ps) {
		t.Errorf("--no-sync: blockers %+v", ps)
	}
}

func TestValidateHealthyPair(t *testing.T) {
	ctx := testCtx(t)
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY)")
	rules, err := selection.Build(selection.Flags{IncludeDatabases: []string{db}})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := Validate(ctx, ValidateOptions{Source: src.URL("postgres"), Target: dst.URL("postgres"), Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 0 {
		t.Errorf("problems on a healthy pair: %+v", ps)
	}

	// A source user without REPLICATION who owns nothing.
	src.Exec(t, db, "CREATE ROLE plain LOGIN PASSWORD 'plain-pw'; GRANT SELECT ON t TO plain")
	t.Cleanup(func() {
		src.Exec(t, db, "DROP OWNED BY plain CASCADE")
		src.Exec(t, "postgres", "DROP ROLE plain")
	})
	u := pg.MustParseURL(strings.Replace(src.URL("postgres").Secret(), "postgres:"+src.Password, "plain:plain-pw", 1))
	ps, err = Validate(ctx, ValidateOptions{Source: u, Target: dst.URL("postgres"), Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	if got := find(ps, "role plain"); len(got) != 1 || !strings.Contains(got[0].Fix, `ALTER ROLE "plain" WITH REPLICATION;`) {
		t.Errorf("replication privilege: %+v", got)
	}
	if got := find(ps, "table public.t"); len(got) != 1 || !strings.Contains(got[0].Fix, "OWNER TO") {
		t.Errorf("ownership: %+v", got)
	}
}
