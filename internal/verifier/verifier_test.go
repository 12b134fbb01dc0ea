package verifier_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
	"github.com/serenorg/postgres-seren-replicator/internal/verifier"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// fixture creates a database of the same name on both clusters and runs
// sql in each; it returns the database name.
func fixture(t *testing.T, sql string) (string, *pgtest.Cluster, *pgtest.Cluster) {
	t.Helper()
	src, dst := pgtest.Pair(t)
	name, _ := src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(name))
	src.Exec(t, name, sql)
	dst.Exec(t, name, sql)
	return name, src, dst
}

func rulesFor(t *testing.T, f selection.Flags) *selection.Rules {
	t.Helper()
	r, err := selection.Build(f)
	if err != nil {
		t.Fatalf("selection: %v", err)
	}
	return r
}

func verify(t *testing.T, src, dst *pgtest.Cluster, db string, mod func(*verifier.Options)) (*verifier.Report, []verifier.TableResult) {
	t.Helper()
	opts := verifier.Options{
		Source:    src.URL("postgres"),
		Target:    dst.URL("postgres"),
		Rules:     rulesFor(t, selection.Flags{IncludeDatabases: []string{db}}),
		Jobs:      3,
		ChunkRows: 300,
		Logf:      func(f string, a ...any) { t.Logf(f, a...) },
	}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var seen []verifier.TableResult
	rep, err := verifier.Verify(ctx, opts, func(r verifier.TableResult) { seen = append(seen, r) })
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(seen) != len(rep.Tables) {
		t.Fatalf("report callback saw %d tables, report has %d", len(seen), len(rep.Tables))
	}
	return rep, seen
}

func table(t *testing.T, rep *verifier.Report, name string) verifier.TableResult {
	t.Helper()
	for _, tr := range rep.Tables {
		if tr.Name() == name {
			return tr
		}
	}
	t.Fatalf("table %s not in report: %+v", name, rep.Tables)
	return verifier.TableResult{}
}

const manyTypes = `
CREATE TABLE ints (
  id bigint PRIMARY KEY, v text, n numeric, ts timestamptz, d date, f float8, b bytea, j jsonb, arr int[], iv interval,
  g int GENERATED ALWAYS AS (length(v)) STORED);
INSERT INTO ints (id, v, n, ts, d, f, b, j, arr, iv)
SELECT i, CASE WHEN i % 7 = 0 THEN NULL WHEN i % 11 = 0 THEN '' ELSE 'v,"' || i || E'\\' END, i / 3.0,
       '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 minute', date '2024-01-01' + i, i * 0.1,
       decode(md5(i::text), 'hex'), jsonb_build_object('i', i, 'a', ARRAY[i, i + 1]), ARRAY[i, NULL, i * 2],
       i * interval '1 hour 3 seconds'
FROM generate_series(1, 2000) i;
CREATE TABLE comp (a int, b text, v text, PRIMARY KEY (a, b));
INSERT INTO comp SELECT a, b, a || b FROM generate_series(1, 300) a, unnest(ARRAY['x', 'y y', 'z"', 'ä']) b;
CREATE TABLE textpk (k text PRIMARY KEY, v int);
INSERT INTO textpk SELECT md5(i::text), i FROM generate_series(1, 1500) i;
CREATE TABLE nokey (a int, b text);
INSERT INTO nokey VALUES (1, 'dup'), (1, 'dup'), (1, 'dup'), (NULL, NULL), (NULL, ''), (2, NULL);
CREATE TABLE empty (id int PRIMARY KEY);
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Odd ""Name""" ("Key" int PRIMARY KEY, "select" text);
INSERT INTO "My Schema"."Odd ""Name""" SELECT i, 'x' || i FROM generate_series(1, 700) i;
CREATE TABLE parent (id int PRIMARY KEY, v text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent SELECT i, 'p' FROM generate_series(1, 10) i;
INSERT INTO child SELECT i, 'c', i FROM generate_series(100, 110) i;
ANALYZE;
`

func TestIdenticalTables(t *testing.T) {
	db, src, dst := fixture(t, manyTypes)
	// Same content, different physical order and session defaults on the target.
	dst.Exec(t, db, `UPDATE ints SET v = v WHERE id % 3 = 0; UPDATE textpk SET v = v WHERE v % 2 = 0; DELETE FROM nokey WHERE a = 2; INSERT INTO nokey VALUES (2, NULL)`)
	dst.Exec(t, "postgres", fmt.Sprintf(`ALTER DATABASE %s SET timezone = 'Asia/Tokyo'; ALTER DATABASE %[1]s SET datestyle = 'SQL, DMY';
		ALTER DATABASE %[1]s SET extra_float_digits = 3; ALTER DATABASE %[1]s SET bytea_output = 'escape'; ALTER DATABASE %[1]s SET intervalstyle = 'iso_8601'`, pg.Ident(db)))

	rep, _ := verify(t, src, dst, db, nil)
	for _, tr := range rep.Tables {
		if tr.Status != verifier.StatusOK {
			t.Errorf("%s: status %s, want ok (%+v)", tr.Name(), tr.Status, tr)
		}
	}
	if !rep.Identical() {
		t.Fatal("report not identical")
	}
	if len(rep.Tables) != 8 {
		t.Errorf("got %d tables, want 8", len(rep.Tables))
	}
	ints := table(t, rep, "public.ints")
	if ints.SourceRows != 2000 || ints.TargetRows != 2000 || ints.Chunks < 5 || ints.Method != verifier.MethodChunked {
		t.Errorf("ints: %+v, want 2000 rows in several chunks", ints)
	}
	if tp := table(t, rep, "public.textpk"); tp.Chunks < 3 || tp.SourceRows != 1500 {
		t.Errorf("textpk: %+v, want 1500 rows in sampled chunks", tp)
	}
	if nk := table(t, rep, "public.nokey"); nk.Method != verifier.MethodWholeTable || nk.SourceRows != 6 {
		t.Errorf("nokey: %+v", nk)
	}
	if p := table(t, rep, "public.parent"); p.SourceRows != 10 {
		t.Errorf("parent counted %d rows, want its own 10 (not the child's)", p.SourceRows)
	}
}

func TestDifferencesNamed(t *testing.T) {
	db, src, dst := fixture(t, manyTypes)
	dst.Exec(t, db, `
UPDATE ints SET j = j || '{"x": 1}' WHERE id = 1234;
DELETE FROM ints WHERE id = 77;
INSERT INTO ints (id, v) VALUES (5000, 'extra');
DELETE FROM textpk WHERE v = 900;
UPDATE comp SET v = 'changed' WHERE a = 250 AND b = 'z"';
INSERT INTO nokey VALUES (1, 'dup');
UPDATE "My Schema"."Odd ""Name""" SET "select" = NULL WHERE "Key" = 1;
`)
	rep, _ := verify(t, src, dst, db, nil)
	if rep.Identical() {
		t.Fatal("report says identical")
	}
	var md5900 string
	if err := src.Conn(t, db).QueryRow(context.Background(), "SELECT md5('900')").Scan(&md5900); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		table string
		rows  map[string]string // key -> kind
	}{
		{"public.ints", map[string]string{"1234": verifier.RowChanged, "77": verifier.RowMissing, "5000": verifier.RowExtra}},
		{"public.textpk", map[string]string{md5900: verifier.RowMissing}},
		{"public.comp", map[string]string{"250\x00z\"": verifier.RowChanged}},
		{`My Schema.Odd "Name"`, map[string]string{"1": verifier.RowChanged}},
	}
	for _, c := range cases {
		tr := table(t, rep, c.table)
		if tr.Status != verifier.StatusDifferent {
			t.Errorf("%s: status %s, want different", c.table, tr.Status)
			continue
		}
		got := map[string]string{}
		for _, r := range tr.Ranges {
			if max(r.SourceRows, r.TargetRows) > 64 {
				t.Errorf("%s: range %s not narrowed (%d/%d rows)", c.table, verifier.FormatRange(tr.KeyColumns, r), r.SourceRows, r.TargetRows)
			}
			for _, row := range r.Rows {
				got[strings.Join(row.Key, "\x00")] = row.Kind
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.rows) {
			t.Errorf("%s: differing rows %q, want %q", c.table, got, c.rows)
		}
	}
	ints := table(t, rep, "public.ints")
	if ints.SourceRows != 2000 || ints.TargetRows != 2000 {
		t.Errorf("ints rows %d/%d, want 2000/2000", ints.SourceRows, ints.TargetRows)
	}
	nk := table(t, rep, "public.nokey")
	if nk.Status != verifier.StatusDifferent || nk.SourceRows != 6 || nk.TargetRows != 7 {
		t.Errorf("nokey: %+v, want different 6/7", nk)
	}
	for _, name := range []string{"public.empty", "public.parent", "public.child"} {
		if tr := table(t, rep, name); tr.Status != verifier.StatusOK {
			t.Errorf("%s: %s, want ok", name, tr.Status)
		}
	}
	if rep.Count(verifier.StatusDifferent) != 5 {
		t.Errorf("%d tables different, want 5", rep.Count(verifier.StatusDifferent))
	}
}

func TestRangesCappedWhenEverythingDiffers(t *testing.T) {
	db, src, dst := fixture(t, `CREATE TABLE big (id int PRIMARY KEY, v int); INSERT INTO big SELECT i, i FROM generate_series(1, 20000) i; ANALYZE big;`)
	dst.Exec(t, db, `UPDATE big SET v = v + 1`)
	rep, _ := verify(t, src, dst, db, func(o *verifier.Options) { o.ChunkRows = 2000; o.MaxRanges = 5 })
	tr := table(t, rep, "public.big")
	if tr.Status != verifier.StatusDifferent || len(tr.Ranges) != 5 || tr.RangesOmitted == 0 {
		t.Fatalf("big: status %s, %d ranges, %d omitted; want different, 5 ranges, some omitted", tr.Status, len(tr.Ranges), tr.RangesOmitted)
	}
}

func TestMissingTableAndColumns(t *testing.T) {
	db, src, dst := fixture(t, `CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a VALUES (1, 'x'), (2, 'y');
CREATE TABLE b (id int PRIMARY KEY, v text, w text); INSERT INTO b VALUES (1, 'x', 'w');`)
	dst.Exec(t, db, `DROP TABLE a; ALTER TABLE b DROP COLUMN w`)
	rep, _ := verify(t, src, dst, db, nil)
	a := table(t, rep, "public.a")
	if a.Status != verifier.StatusMissing || a.SourceRows != 2 {
		t.Errorf("a: %+v, want missing with 2 source rows", a)
	}
	b := table(t, rep, "public.b")
	if b.Status != verifier.StatusDifferent || !strings.Contains(strings.Join(b.Notes, ";"), "columns missing on the target: w") {
		t.Errorf("b: %+v, want different naming column w", b)
	}
}

func TestMissingDatabase(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1)`)
	rep, _ := verify(t, src, dst, db, nil)
	if rep.Identical() || len(rep.Databases) != 1 || !rep.Databases[0].MissingOnTarget {
		t.Fatalf("report %+v, want database missing", rep)
	}
	if a := table(t, rep, "public.a"); a.Status != verifier.StatusMissing {
		t.Errorf("a: %s, want missing", a.Status)
	}
}

func TestPredicateAndSchemaOnly(t *testing.T) {
	db, src, dst := fixture(t, `
CREATE TABLE events (id int PRIMARY KEY, at timestamptz, kind text);
INSERT INTO events SELECT i, date_trunc('day', now()) + interval '1 hour' - i * interval '1 day', CASE WHEN i % 2 = 0 THEN 'keep' ELSE 'drop' END FROM generate_series(1, 1000) i;
CREATE TABLE logs (id int PRIMARY KEY, v text);
INSERT INTO logs SELECT i, 'x' FROM generate_series(1, 50) i;
ANALYZE;`)
	// The target holds only the filtered rows; logs is schema-only there.
	dst.Exec(t, db, `DELETE FROM events WHERE kind = 'drop' OR at < now() - interval '300 days'; TRUNCATE logs`)
	flags := selection.Flags{
		IncludeDatabases: []string{db},
		TableFilters:     []string{db + ".events:kind = 'keep'"},
		TimeFilters:      []string{db + ".events:at:300 days"},
		SchemaOnlyTables: []string{db + ".logs"},
	}
	rep, _ := verify(t, src, dst, db, func(o *verifier.Options) { o.Rules = rulesFor(t, flags) })
	ev := table(t, rep, "public.events")
	if ev.Status != verifier.StatusOK || ev.SourceRows != ev.TargetRows || ev.SourceRows < 140 || ev.SourceRows > 150 || ev.Predicate == "" {
		t.Errorf("events: %+v, want ok comparing ~150 filtered rows", ev)
	}
	if lg := table(t, rep, "public.logs"); lg.Status != verifier.StatusOK || lg.Method != verifier.MethodSchemaOnly {
		t.Errorf("logs: %+v, want ok schema-only", lg)
	}

	// A change inside the filtered rows is found; one outside is not looked at.
	dst.Exec(t, db, `UPDATE events SET kind = 'keep ' WHERE id = 10`)
	rep, _ = verify(t, src, dst, db, func(o *verifier.Options) { o.Rules = rulesFor(t, flags) })
	ev = table(t, rep, "public.events")
	if ev.Status != verifier.StatusDifferent || len(ev.Ranges) != 1 || len(ev.Ranges[0].Rows) != 1 || ev.Ranges[0].Rows[0].Key[0] != "10" {
		t.Errorf("events: %+v, want row 10 missing on the target", ev)
	}
}

func TestBadPredicateIsAnError(t *testing.T) {
	db, src, dst := fixture(t, `CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1); CREATE TABLE b (id int PRIMARY KEY);`)
	opts := verifier.Options{
		Source: src.URL("postgres"), Target: dst.URL("postgres"), Jobs: 2,
		Rules: rulesFor(t, selection.Flags{IncludeDatabases: []string{db}, TableFilters: []string{db + ".a:no_such_column > 1"}}),
	}
	rep, err := verifier.Verify(context.Background(), opts, nil)
	if err == nil || rep == nil {
		t.Fatalf("Verify: err %v, report %v; want an error and a report", err, rep)
	}
	if a := table(t, rep, "public.a"); a.Status != verifier.StatusError || !strings.Contains(a.Error, "no_such_column") {
		t.Errorf("a: %+v, want error naming the column", a)
	}
	if b := table(t, rep, "public.b"); b.Status != verifier.StatusOK {
		t.Errorf("b: %s, want ok", b.Status)
	}
}

func TestKeyCollationDiffersBetweenSides(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	rows := `INSERT INTO words SELECT w, i FROM (SELECT CASE i % 4 WHEN 0 THEN upper(md5(i::text)) WHEN 1 THEN md5(i::text)
		WHEN 2 THEN '_' || md5(i::text) ELSE 'ä' || md5(i::text) END, i FROM generate_series(1, 3000) i) s(w, i); ANALYZE words;`
	// Same rows; the source sorts the key with ICU rules, the target in byte order.
	src.Exec(t, db, `CREATE TABLE words (w text COLLATE "und-x-icu" PRIMARY KEY, n int);`+rows)
	dst.Exec(t, db, `CREATE TABLE words (w text COLLATE "C" PRIMARY KEY, n int);`+rows)
	rep, _ := verify(t, src, dst, db, nil)
	w := table(t, rep, "public.words")
	if w.Status != verifier.StatusOK || w.SourceRows != 3000 || !strings.Contains(strings.Join(w.Notes, ";"), "byte order") {
		t.Fatalf("words: %+v, want ok compared in byte order", w)
	}

	dst.Exec(t, db, `UPDATE words SET n = -1 WHERE n = 2999`)
	rep, _ = verify(t, src, dst, db, nil)
	w = table(t, rep, "public.words")
	if w.Status != verifier.StatusDifferent || len(w.Ranges) != 1 || len(w.Ranges[0].Rows) != 1 || w.Ranges[0].Rows[0].Kind != verifier.RowChanged {
		t.Fatalf("words: %+v, want one changed row", w)
	}
}
