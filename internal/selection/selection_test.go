package selection

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		f    Flags
		want string // the whole error message
	}{
		{
			name: "unknown time unit",
			f:    Flags{TimeFilters: []string{"events:created_at:6 fortnights"}},
			want: `--time-filter "events:created_at:6 fortnights": unknown unit "fortnights" (use seconds, minutes, hours, days, weeks, months or years)`,
		},
		{
			name: "time filter without window",
			f:    Flags{TimeFilters: []string{"events:created_at"}},
			want: `--time-filter "events:created_at": missing the column or the window (expected "[db.]table:column:window", e.g. "app.events:created_at:6 months")`,
		},
		{
			name: "time filter without colon",
			f:    Flags{TimeFilters: []string{"events"}},
			want: `--time-filter "events": missing ':' (expected "[db.]table:column:window", e.g. "app.events:created_at:6 months")`,
		},
		{
			name: "time filter with dotted column",
			f:    Flags{TimeFilters: []string{"events:e.created_at:1 day"}},
			want: `--time-filter "events:e.created_at:1 day": the column must be one name; quote it if it contains dots, as in "my.col"`,
		},
		{
			name: "time filter zero",
			f:    Flags{TimeFilters: []string{"app.events:created_at:0 days"}},
			want: `--time-filter "app.events:created_at:0 days": the window must be positive`,
		},
		{
			name: "table filter without colon",
			f:    Flags{TableFilters: []string{"orders status = 1"}},
			want: `--table-filter "orders status = 1": missing ':' (expected "[db.]table:SQL predicate", e.g. "app.orders:status <> 'archived'")`,
		},
		{
			name: "empty predicate",
			f:    Flags{TableFilters: []string{"app.orders:  "}},
			want: `--table-filter "app.orders:  ": empty predicate (expected "[db.]table:SQL predicate", e.g. "app.orders:status <> 'archived'")`,
		},
		{
			name: "stacked statement",
			f:    Flags{TableFilters: []string{"app.orders:true; drop table users"}},
			want: `--table-filter "app.orders:true; drop table users": a predicate is one boolean expression, not several statements`,
		},
		{
			name: "escaping the where clause",
			f:    Flags{TableFilters: []string{"app.orders:true) union select 1 from pg_authid where (true"}},
			want: `--table-filter "app.orders:true) union select 1 from pg_authid where (true": not a valid SQL expression: syntax error at or near ")"`,
		},
		{
			name: "bad include-tables name",
			f:    Flags{IncludeTables: []string{"app.users", "app..orders"}},
			want: `--include-tables "app..orders": empty name (check the dots)`,
		},
		{
			name: "too many dots",
			f:    Flags{ExcludeTables: []string{"a.b.c.d"}},
			want: `--exclude-tables "a.b.c.d": too many dots: use db.table or db.schema.table; quote names that contain dots, as in "db"."my.table"`,
		},
		{
			name: "bad schema-only name",
			f:    Flags{SchemaOnlyTables: []string{`app."audit`}},
			want: `--schema-only-tables "app.\"audit": unterminated quoted name`,
		},
		{
			name: "include and exclude databases",
			f:    Flags{IncludeDatabases: []string{"app"}, ExcludeDatabases: []string{"scratch"}},
			want: `--exclude-databases "scratch": cannot be combined with --include-databases ("app"): include and exclude lists are mutually exclusive; use one or the other`,
		},
		{
			name: "include and exclude tables",
			f:    Flags{IncludeTables: []string{"app.users"}, ExcludeTables: []string{"app.logs"}},
			want: `--exclude-tables "app.logs": cannot be combined with --include-tables ("app.users"): include and exclude table lists for one database are mutually exclusive; use one or the other`,
		},
		{
			name: "include tables everywhere and exclude tables",
			f:    Flags{IncludeTables: []string{"users"}, ExcludeTables: []string{"crm.logs"}},
			want: `--exclude-tables "crm.logs": cannot be combined with --include-tables ("users"): include and exclude table lists for one database are mutually exclusive; use one or the other`,
		},
		{
			name: "template database",
			f:    Flags{IncludeDatabases: []string{"app", "template1"}},
			want: `--include-databases "template1": template databases are never replicated`,
		},
		{
			name: "schema-only and excluded",
			f:    Flags{ExcludeTables: []string{"app.audit"}, SchemaOnlyTables: []string{"app.public.audit"}},
			want: `--schema-only-tables "app.public.audit": the table is also excluded by --exclude-tables ("app.audit")`,
		},
		{
			name: "table rule for a database not included",
			f:    Flags{IncludeDatabases: []string{"app"}, IncludeTables: []string{"crm.users"}},
			want: `--include-tables "crm.users": database "crm" is not replicated: it is not in --include-databases`,
		},
		{
			name: "filter for an excluded database",
			f:    Flags{ExcludeDatabases: []string{"crm"}, TimeFilters: []string{"crm.events:at:1y"}},
			want: `--time-filter "crm.events:at:1y": database "crm" is not replicated: it is excluded by --exclude-databases`,
		},
		{
			name: "filter for a database include-tables leaves out",
			f:    Flags{IncludeTables: []string{"app.users"}, TableFilters: []string{"crm.orders:x > 1"}},
			want: `--table-filter "crm.orders:x > 1": database "crm" is not replicated: include-tables names no table in it (add it to --include-databases, or name its tables)`,
		},
		{
			name: "missing rules file",
			f:    Flags{ConfigFile: filepath.Join("testdata", "nope.toml")},
			want: `--config "testdata/nope.toml": reading rules file: open testdata/nope.toml: no such file or directory`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Build(tt.f)
			if err == nil {
				t.Fatalf("Build(%+v) = %+v; want error %q", tt.f, r.Summary(), tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("Build error\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

// tbl is one table of a source cluster, for decision tests.
type tbl struct{ db, schema, table string }

func TestDecisions(t *testing.T) {
	type check struct {
		tbl
		want TableRule
	}
	all := TableRule{Include: true}
	none := TableRule{}
	tests := []struct {
		name   string
		f      Flags
		dbs    map[string]bool // Database(name) expectations
		tables []check
	}{
		{
			name: "no rules",
			f:    Flags{},
			dbs:  map[string]bool{"app": true, "postgres": false, "template0": false, "template1": false},
			tables: []check{
				{tbl{"app", "public", "users"}, all},
				{tbl{"template1", "public", "t"}, none},
			},
		},
		{
			name: "include databases",
			f:    Flags{IncludeDatabases: []string{"app", " crm ", ""}},
			dbs:  map[string]bool{"app": true, "crm": true, "other": false, "template1": false},
			tables: []check{
				{tbl{"app", "public", "users"}, all},
				{tbl{"other", "public", "users"}, none},
			},
		},
		{
			name: "exclude databases",
			f:    Flags{ExcludeDatabases: []string{"scratch", "template0"}},
			dbs:  map[string]bool{"app": true, "scratch": false, "template0": false},
		},
		{
			name: "include tables select their databases",
			f:    Flags{IncludeTables: []string{"app.users", "app.sales.orders"}},
			dbs:  map[string]bool{"app": true, "crm": false},
			tables: []check{
				{tbl{"app", "public", "users"}, all},
				{tbl{"app", "sales", "orders"}, all},
				{tbl{"app", "public", "orders"}, none},
				{tbl{"app", "sales", "users"}, none},
				{tbl{"crm", "public", "users"}, none},
			},
		},
		{
			name: "include tables with include databases keeps other databases whole",
			f:    Flags{IncludeDatabases: []string{"app", "crm"}, IncludeTables: []string{"app.users"}},
			dbs:  map[string]bool{"app": true, "crm": true, "x": false},
			tables: []check{
				{tbl{"app", "public", "users"}, all},
				{tbl{"app", "public", "orders"}, none},
				{tbl{"crm", "public", "orders"}, all},
			},
		},
		{
			name: "bare include table applies to every database",
			f:    Flags{IncludeTables: []string{"users"}},
			dbs:  map[string]bool{"app": true, "crm": true},
			tables: []check{
				{tbl{"app", "public", "users"}, all},
				{tbl{"crm", "public", "users"}, all},
				{tbl{"crm", "public", "orders"}, none},
			},
		},
		{
			name: "names match exactly",
			f:    Flags{IncludeTables: []string{"app.Users", `app."my.schema"."t:1"`}},
			tables: []check{
				{tbl{"app", "public", "Users"}, all},
				{tbl{"app", "public", "users"}, none},
				{tbl{"app", "my.schema", "t:1"}, all},
			},
		},
		{
			name: "exclude tables",
			f:    Flags{ExcludeTables: []string{"app.logs", "*.audit.events", "tmp"}},
			dbs:  map[string]bool{"app": true, "crm": true},
			tables: []check{
				{tbl{"app", "public", "logs"}, none},
				{tbl{"crm", "public", "logs"}, all},
				{tbl{"crm", "audit", "events"}, none},
				{tbl{"app", "audit", "events"}, none},
				{tbl{"app", "public", "events"}, all},
				{tbl{"crm", "public", "tmp"}, none},
			},
		},
		{
			name: "include tables in one database, exclude tables in another",
			f:    Flags{IncludeDatabases: []string{"app", "crm"}, IncludeTables: []string{"app.users"}, ExcludeTables: []string{"crm.logs"}},
			tables: []check{
				{tbl{"app", "public", "users"}, all},
				{tbl{"app", "public", "logs"}, none},
				{tbl{"crm", "public", "logs"}, none},
				{tbl{"crm", "public", "users"}, all},
			},
		},
		{
			name: "schema only",
			f:    Flags{SchemaOnlyTables: []string{"app.audit_log"}, TableFilters: []string{"app.audit_log:id > 5"}},
			tables: []check{
				{tbl{"app", "public", "audit_log"}, TableRule{Include: true, SchemaOnly: true}},
				{tbl{"crm", "public", "audit_log"}, all},
			},
		},
		{
			name: "schema-only tables count as named by include-tables",
			f:    Flags{IncludeTables: []string{"app.users"}, SchemaOnlyTables: []string{"app.audit_log"}},
			tables: []check{
				{tbl{"app", "public", "users"}, all},
				{tbl{"app", "public", "audit_log"}, TableRule{Include: true, SchemaOnly: true}},
				{tbl{"app", "public", "orders"}, none},
			},
		},
		{
			name: "filters are ANDed, each parenthesised",
			f: Flags{
				TableFilters: []string{"orders:status <> 'archived'", "app.orders:region = 'eu' or region = 'uk'"},
				TimeFilters:  []string{"app.orders:created_at:6 months", `*.sales.events:"At":90d`},
			},
			tables: []check{
				{tbl{"app", "public", "orders"}, TableRule{Include: true, Predicate: `(status <> 'archived') AND (region = 'eu' OR region = 'uk') AND ("created_at" >= pg_catalog.now() - interval '6 months')`}},
				{tbl{"crm", "public", "orders"}, TableRule{Include: true, Predicate: `(status <> 'archived')`}},
				{tbl{"crm", "sales", "events"}, TableRule{Include: true, Predicate: `("At" >= pg_catalog.now() - interval '90 days')`}},
				{tbl{"crm", "public", "events"}, all},
			},
		},
		{
			name: "predicate may contain colons",
			f:    Flags{TableFilters: []string{"app.orders:created_at::date >= '2024-01-01'"}},
			tables: []check{
				{tbl{"app", "public", "orders"}, TableRule{Include: true, Predicate: `(created_at::pg_catalog.date >= '2024-01-01')`}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Build(tt.f)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			for db, want := range tt.dbs {
				if got := r.Database(db); got != want {
					t.Errorf("Database(%q) = %v; want %v", db, got, want)
				}
			}
			for _, c := range tt.tables {
				if got := r.Table(c.db, c.schema, c.table); got != c.want {
					t.Errorf("Table(%q, %q, %q) = %+v; want %+v", c.db, c.schema, c.table, got, c.want)
				}
			}
		})
	}
}

func TestNilAndEmptyRules(t *testing.T) {
	var r *Rules
	if !r.Database("app") || r.Database("template0") {
		t.Error("nil rules: want every database but the templates")
	}
	if got := r.Table("app", "public", "t"); got != (TableRule{Include: true}) {
		t.Errorf("nil rules Table = %+v", got)
	}
	if !r.Empty() || r.HasTableRules("app") || r.Summary() != nil || !reflect.DeepEqual(r.Flags(), Flags{}) {
		t.Error("nil rules: want empty, no table rules, no summary, zero flags")
	}
	e, err := Build(Flags{IncludeDatabases: []string{""}})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Empty() || e.Summary() != nil {
		t.Errorf("blank flags: want empty rules, got %q", e.Summary())
	}
}

func TestHasTableRulesAndEmpty(t *testing.T) {
	tests := []struct {
		f     Flags
		db    string
		rules bool
	}{
		{Flags{IncludeDatabases: []string{"app"}}, "app", false},
		{Flags{IncludeTables: []string{"app.users"}}, "app", true},
		{Flags{IncludeTables: []string{"app.users"}}, "crm", false},
		{Flags{ExcludeTables: []string{"logs"}}, "crm", true},
		{Flags{SchemaOnlyTables: []string{"crm.audit"}}, "crm", true},
		{Flags{SchemaOnlyTables: []string{"crm.audit"}}, "app", false},
		{Flags{TableFilters: []string{"*.s.t:x"}}, "app", true},
		{Flags{TimeFilters: []string{"app.t:c:1y"}}, "app", true},
		{Flags{TimeFilters: []string{"app.t:c:1y"}}, "crm", false},
	}
	for _, tt := range tests {
		r, err := Build(tt.f)
		if err != nil {
			t.Fatalf("Build(%+v): %v", tt.f, err)
		}
		if got := r.HasTableRules(tt.db); got != tt.rules {
			t.Errorf("Build(%+v).HasTableRules(%q) = %v; want %v", tt.f, tt.db, got, tt.rules)
		}
		if r.Empty() {
			t.Errorf("Build(%+v).Empty() = true", tt.f)
		}
	}
}

func TestSummary(t *testing.T) {
	r, err := Build(Flags{
		IncludeDatabases: []string{"app", "crm"},
		ExcludeTables:    []string{"app.logs", "tmp"},
		SchemaOnlyTables: []string{"app.audit.log"},
		TableFilters:     []string{"orders:status <> 'archived'"},
		TimeFilters:      []string{"app.events:created_at:6mo"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"databases: only app, crm",
		"tables: all except app.logs, tmp (every database)",
		"schema only, no rows: app.audit.log",
		"rows of orders (every database) where status <> 'archived'",
		"rows of app.events where created_at is within the last 6 months",
	}
	if got := r.Summary(); !reflect.DeepEqual(got, want) {
		t.Errorf("Summary:\n got %q\nwant %q", got, want)
	}

	r, err = Build(Flags{IncludeTables: []string{"app.users", "crm.x", "app.y"}, ExcludeDatabases: []string{"crm"}})
	if err == nil {
		t.Fatalf("want error for include-tables in an excluded database, got %q", r.Summary())
	}
	r, err = Build(Flags{IncludeTables: []string{"app.users", "crm.x", "app.y"}})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"databases: only app, crm (those named by include-tables)",
		"tables: only app.users, crm.x, app.y",
	}
	if got := r.Summary(); !reflect.DeepEqual(got, want) {
		t.Errorf("Summary:\n got %q\nwant %q", got, want)
	}
}

// grid is a small cluster over which two Rules must decide alike.
var gridDBs = []string{"app", "crm", "my.db", "*", "scratch", "template1"}

func gridTables() []tbl {
	var out []tbl
	for _, db := range gridDBs {
		for _, s := range []string{"public", "sales", "my.schema"} {
			for _, t := range []string{"users", "orders", "events", "audit_log", "t:1", `q"t`} {
				out = append(out, tbl{db, s, t})
			}
		}
	}
	return out
}

func sameDecisions(t *testing.T, a, b *Rules) {
	t.Helper()
	for _, db := range gridDBs {
		if a.Database(db) != b.Database(db) {
			t.Errorf("Database(%q): %v vs %v", db, a.Database(db), b.Database(db))
		}
		if a.Database(db) && a.HasTableRules(db) != b.HasTableRules(db) {
			t.Errorf("HasTableRules(%q): %v vs %v", db, a.HasTableRules(db), b.HasTableRules(db))
		}
	}
	for _, x := range gridTables() {
		if ga, gb := a.Table(x.db, x.schema, x.table), b.Table(x.db, x.schema, x.table); ga != gb {
			t.Errorf("Table(%q, %q, %q): %+v vs %+v", x.db, x.schema, x.table, ga, gb)
		}
	}
}

func TestFlagsRoundTrip(t *testing.T) {
	tests := []Flags{
		{},
		{IncludeDatabases: []string{"app", "my.db", "*"}},
		{ExcludeDatabases: []string{"scratch"}, ExcludeTables: []string{"app.logs", `*."my.schema"."t:1"`, `app."q""t"`}},
		{IncludeTables: []string{"app.users", `"my.db".sales.orders`, `"*".events`}},
		{IncludeTables: []string{"users"}, SchemaOnlyTables: []string{"app.audit_log", "*.sales.events"}},
		{
			TableFilters: []string{`"my.db"."my.schema".orders:"a:b" = 'x:y'`, "orders:(a) or (b)"},
			TimeFilters:  []string{`app.events:"ts:utc":36 hours`, "*.sales.events:created_at:1y", `app.t:"q""c":2 weeks`},
		},
	}
	for _, f := range tests {
		r, err := Build(f)
		if err != nil {
			t.Fatalf("Build(%+v): %v", f, err)
		}
		flags := r.Flags()
		back, err := Build(flags)
		if err != nil {
			t.Fatalf("Build(%+v) (from Flags()): %v", flags, err)
		}
		if !reflect.DeepEqual(back.Flags(), flags) {
			t.Errorf("Flags not stable:\n first %+v\nsecond %+v", flags, back.Flags())
		}
		sameDecisions(t, r, back)
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const exampleFile = `
include_databases = ["app", "crm"]

[databases.app]
include_tables = ["users", "sales.orders", "events"]
schema_only_tables = ["audit_log"]

[[databases.app.table_filters]]
table = "sales.orders"
where = "status <> 'archived'"

[[databases.app.time_filters]]
table = "events"
column = "created_at"
last = "6 months"

[databases."*"]
schema_only_tables = ["big_history"]

[databases.warehouse]
exclude_tables = []
[[databases.warehouse.time_filters]]
table = "facts"
column = "at"
last = "1y"
`

func TestRulesFile(t *testing.T) {
	path := writeFile(t, exampleFile)
	r, err := Build(Flags{ConfigFile: path})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		tbl
		want TableRule
	}{
		{tbl{"app", "public", "users"}, TableRule{Include: true}},
		{tbl{"app", "sales", "orders"}, TableRule{Include: true, Predicate: "(status <> 'archived')"}},
		{tbl{"app", "public", "events"}, TableRule{Include: true, Predicate: `("created_at" >= pg_catalog.now() - interval '6 months')`}},
		{tbl{"app", "public", "audit_log"}, TableRule{Include: true, SchemaOnly: true}},
		{tbl{"app", "public", "other"}, TableRule{}},
		{tbl{"crm", "public", "other"}, TableRule{Include: true}},
		{tbl{"crm", "public", "big_history"}, TableRule{Include: true, SchemaOnly: true}},
		{tbl{"warehouse", "public", "facts"}, TableRule{}}, // not in include_databases
	}
	for _, c := range checks {
		if got := r.Table(c.db, c.schema, c.table); got != c.want {
			t.Errorf("Table(%q, %q, %q) = %+v; want %+v", c.db, c.schema, c.table, got, c.want)
		}
	}

	// The flag form inlines the file and drops rules for databases that
	// are not replicated.
	want := Flags{
		IncludeDatabases: []string{"app", "crm"},
		IncludeTables:    []string{"app.users", "app.sales.orders", "app.events"},
		SchemaOnlyTables: []string{"big_history", "app.audit_log"},
		TableFilters:     []string{"app.sales.orders:status <> 'archived'"},
		TimeFilters:      []string{"app.events:created_at:6 months"},
	}
	if got := r.Flags(); !reflect.DeepEqual(got, want) {
		t.Errorf("Flags:\n got %+v\nwant %+v", got, want)
	}
	back, err := Build(r.Flags())
	if err != nil {
		t.Fatal(err)
	}
	sameDecisions(t, r, back)
}

func TestRulesFileErrors(t *testing.T) {
	tests := []struct {
		name, file string
		want       string // the error message after the file path
		hint       string // substring of the attached hint, if any
	}{
		{
			name: "unknown key",
			file: "[databases.app]\ninclude_table = [\"users\"]\n",
			want: `: unknown key "databases.app.include_table"`,
			hint: "include_tables",
		},
		{
			name: "unknown keys",
			file: "include_database = [\"a\"]\n[[databases.app.table_filters]]\ntable = \"t\"\nwhere = \"x\"\nwhen = \"y\"\n",
			want: `: unknown keys "include_database", "databases.app.table_filters.when"`,
		},
		{
			name: "wrong type",
			file: "include_databases = \"app\"\n",
			want: `incompatible types`,
			hint: "TOML syntax",
		},
		{
			name: "syntax",
			file: "include_databases = [\"app\"\n",
			want: `toml:`,
		},
		{
			name: "missing where",
			file: "[[databases.app.table_filters]]\ntable = \"orders\"\n",
			want: `: databases.app.table_filters[0]: missing "where"`,
		},
		{
			name: "missing column",
			file: "[[databases.app.time_filters]]\ntable = \"orders\"\nlast = \"1y\"\n",
			want: `: databases.app.time_filters[0]: missing "column"`,
		},
		{
			name: "bad window",
			file: "[[databases.app.time_filters]]\ntable = \"events\"\ncolumn = \"at\"\nlast = \"6 fortnights\"\n",
			want: `: databases.app.time_filters[0].last "6 fortnights": unknown unit "fortnights" (use seconds, minutes, hours, days, weeks, months or years)`,
		},
		{
			name: "bad predicate",
			file: "[[databases.\"my db\".table_filters]]\ntable = \"t\"\nwhere = \"1=1; select 1\"\n",
			want: `: databases."my db".table_filters[0].where "1=1; select 1": a predicate is one boolean expression, not several statements`,
		},
		{
			name: "bad table",
			file: "[databases.app]\ninclude_tables = [\"app.public.users\"]\n",
			want: `: databases.app.include_tables "app.public.users": too many dots: inside [databases.NAME] use table or schema.table`,
		},
		{
			name: "include and exclude databases",
			file: "include_databases = [\"a\"]\nexclude_databases = [\"b\"]\n",
			want: `: exclude_databases "b": cannot be combined with include_databases in `,
		},
		{
			name: "include and exclude tables in one section",
			file: "[databases.a]\ninclude_tables = [\"x\"]\nexclude_tables = [\"y\"]\n",
			want: `: databases.a.exclude_tables "y": cannot be combined with databases.a.include_tables in `,
		},
		{
			name: "include tables and exclude tables everywhere",
			file: "[databases.a]\ninclude_tables = [\"x\"]\n[databases.\"*\"]\nexclude_tables = [\"y\"]\n",
			want: `: databases."*".exclude_tables "y": cannot be combined with databases.a.include_tables in `,
		},
		{
			name: "template database",
			file: "include_databases = [\"template0\"]\n",
			want: `: include_databases "template0": template databases are never replicated`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file)
			_, err := Build(Flags{ConfigFile: path})
			if err == nil {
				t.Fatalf("want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q; want it to name %s and contain %q", err, path, tt.want)
			}
			if tt.hint != "" && !strings.Contains(hint.Of(err), tt.hint) {
				t.Errorf("hint %q; want it to contain %q", hint.Of(err), tt.hint)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	path := writeFile(t, `
exclude_databases = ["scratch"]

[databases.app]
schema_only_tables = ["audit_log"]
[[databases.app.table_filters]]
table = "orders"
where = "status <> 'archived'"

[databases.crm]
exclude_tables = ["spam"]
`)
	incPath := writeFile(t, "include_databases = [\"app\"]\n[databases.app]\ninclude_tables = [\"users\"]\n")

	tests := []struct {
		name  string
		f     Flags
		err   string // substring of the expected error
		flags Flags  // merged rules in flag form
	}{
		{
			name: "file alone",
			f:    Flags{ConfigFile: path},
			flags: Flags{
				ExcludeDatabases: []string{"scratch"},
				ExcludeTables:    []string{"crm.spam"},
				SchemaOnlyTables: []string{"app.audit_log"},
				TableFilters:     []string{"app.orders:status <> 'archived'"},
			},
		},
		{
			name: "flag lists are added, duplicates dropped",
			f: Flags{
				ConfigFile:       path,
				ExcludeDatabases: []string{"old", "scratch"},
				ExcludeTables:    []string{"crm.spam", "crm.junk"},
				SchemaOnlyTables: []string{"crm.audit_log"},
				TableFilters:     []string{"app.orders:status <> 'archived'", "app.orders:total > 0"},
				TimeFilters:      []string{"app.orders:created_at:1y"},
			},
			flags: Flags{
				ExcludeDatabases: []string{"scratch", "old"},
				ExcludeTables:    []string{"crm.spam", "crm.junk"},
				SchemaOnlyTables: []string{"app.audit_log", "crm.audit_log"},
				TableFilters:     []string{"app.orders:status <> 'archived'", "app.orders:total > 0"},
				TimeFilters:      []string{"app.orders:created_at:1 year"},
			},
		},
		{
			name: "include-databases replaces the file's database selection",
			f:    Flags{ConfigFile: path, IncludeDatabases: []string{"crm", "scratch"}},
			flags: Flags{
				IncludeDatabases: []string{"crm", "scratch"},
				ExcludeTables:    []string{"crm.spam"},
			},
		},
		{
			name: "include-databases replaces the file's include_databases",
			f:    Flags{ConfigFile: incPath, IncludeDatabases: []string{"crm"}},
			flags: Flags{
				IncludeDatabases: []string{"crm"},
			},
		},
		{
			name: "include_tables in the file select their databases",
			f:    Flags{ConfigFile: writeFile(t, "[databases.crm]\ninclude_tables = [\"contacts\"]\n[databases.app]\nschema_only_tables = [\"x\"]\n")},
			flags: Flags{
				IncludeTables: []string{"crm.contacts"},
			},
		},
		{
			name: "exclude-databases against the file's include_databases",
			f:    Flags{ConfigFile: incPath, ExcludeDatabases: []string{"app"}},
			err:  `--exclude-databases "app": cannot be combined with include_databases in ` + incPath,
		},
		{
			name: "exclude-tables against the file's include_tables",
			f:    Flags{ConfigFile: incPath, ExcludeTables: []string{"app.logs"}},
			err:  `--exclude-tables "app.logs": cannot be combined with databases.app.include_tables in ` + incPath,
		},
		{
			name: "include-tables against the file's exclude_tables",
			f:    Flags{ConfigFile: path, IncludeTables: []string{"crm.contacts"}},
			err:  `--include-tables "crm.contacts": cannot be combined with databases.crm.exclude_tables in ` + path,
		},
		{
			name: "include-tables for one database, the file's exclude_tables for another",
			f:    Flags{ConfigFile: path, IncludeDatabases: []string{"app", "crm"}, IncludeTables: []string{"app.users"}},
			flags: Flags{
				IncludeDatabases: []string{"app", "crm"},
				IncludeTables:    []string{"app.users"},
				ExcludeTables:    []string{"crm.spam"},
				SchemaOnlyTables: []string{"app.audit_log"},
				TableFilters:     []string{"app.orders:status <> 'archived'"},
			},
		},
		{
			name: "flag table rule for a database the file excludes",
			f:    Flags{ConfigFile: path, TableFilters: []string{"scratch.t:x = 1"}},
			err:  `--table-filter "scratch.t:x = 1": database "scratch" is not replicated: it is excluded by exclude_databases in ` + path,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Build(tt.f)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Build error %v; want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Flags(); !reflect.DeepEqual(got, tt.flags) {
				t.Errorf("merged flags:\n got %+v\nwant %+v", got, tt.flags)
			}
			back, err := Build(r.Flags())
			if err != nil {
				t.Fatalf("Build(merged flags): %v", err)
			}
			sameDecisions(t, r, back)
		})
	}
}

// TestDocExample keeps the rules-file example in docs/selection.md true.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "selection.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```toml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/selection.md has no ```toml example")
	}
	r, err := Build(Flags{ConfigFile: writeFile(t, example)})
	if err != nil {
		t.Fatalf("the documented example does not build: %v", err)
	}
	checks := []struct {
		tbl
		want TableRule
	}{
		{tbl{"app", "public", "users"}, TableRule{Include: true}},
		{tbl{"app", "public", "audit_log"}, TableRule{Include: true, SchemaOnly: true}},
		{tbl{"app", "sales", "orders"}, TableRule{Include: true, Predicate: "(status <> 'archived')"}},
		{tbl{"app", "public", "events"}, TableRule{Include: true, Predicate: `("created_at" >= pg_catalog.now() - interval '6 months')`}},
		{tbl{"app", "public", "sessions"}, TableRule{}},
		{tbl{"crm", "public", "contacts"}, TableRule{Include: true}},
		{tbl{"crm", "public", "big_history"}, TableRule{Include: true, SchemaOnly: true}},
		{tbl{"my-db.v2", "public", "anything"}, TableRule{}},
	}
	for _, c := range checks {
		if got := r.Table(c.db, c.schema, c.table); got != c.want {
			t.Errorf("Table(%q, %q, %q) = %+v; want %+v", c.db, c.schema, c.table, got, c.want)
		}
	}
}
