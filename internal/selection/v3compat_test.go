package selection

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRulesFileV3Keys reads the original tool's (v3) example rules file:
// schema_only and a schema key inside table_filters/time_filters.
func TestRulesFileV3Keys(t *testing.T) {
	r, err := Build(Flags{ConfigFile: filepath.Join("testdata", "v3-example.toml")})
	if err != nil {
		t.Fatalf("the original's example config is refused: %v", err)
	}
	tests := []struct {
		schema, table string
		schemaOnly    bool
		predicate     string // a substring of the predicate; "" for none
	}{
		{"analytics", "evmlog_strides", true, ""},
		{"reporting", "archive", true, ""},
		{"public", "evmlog_strides", false, ""},
		{"analytics", "events", false, "created_at"},
		{"public", "events", false, ""}, // schema = "analytics" is not public
		{"public", "transactions", false, "status"},
		{"analytics", "metrics", false, "timestamp"},
		{"public", "metrics", false, ""},
	}
	for _, tt := range tests {
		got := r.Table("mydb", tt.schema, tt.table)
		if !got.Include || got.SchemaOnly != tt.schemaOnly ||
			(tt.predicate == "") != (got.Predicate == "") || !strings.Contains(got.Predicate, tt.predicate) {
			t.Errorf("Table(mydb, %s, %s) = %+v; want schema-only %v, predicate on %q",
				tt.schema, tt.table, got, tt.schemaOnly, tt.predicate)
		}
	}
}

func TestRulesFileV3SchemaIsLiteral(t *testing.T) {
	path := writeFile(t, `[databases.db1]
schema_only = ["users"]
[[databases.db1.table_filters]]
table = "my.table"
schema = "odd schema"
where = "id > 0"
`)
	r, err := Build(Flags{ConfigFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Table("db1", "odd schema", "my.table"); got.Predicate == "" {
		t.Errorf("filter with schema and a dotted table name not applied: %+v", got)
	}
	if got := r.Table("db1", "public", "users"); !got.SchemaOnly {
		t.Errorf("schema_only = [\"users\"] is not public.users: %+v", got)
	}
}

// TestPostgresDatabaseLeftOutUnlessNamed: as in the original tool, the
// postgres database is replicated only when a rule names it.
func TestPostgresDatabaseLeftOutUnlessNamed(t *testing.T) {
	tests := []struct {
		name    string
		f       Flags
		want    bool
		because string
	}{
		{"no rules", Flags{}, false, PostgresLeftOut},
		{"exclude-databases other", Flags{ExcludeDatabases: []string{"shop"}}, false, PostgresLeftOut},
		{"include-databases postgres", Flags{IncludeDatabases: []string{"shop", "postgres"}}, true, ""},
		{"include-databases other", Flags{IncludeDatabases: []string{"shop"}}, false, "it is not in"},
		{"include-tables in postgres", Flags{IncludeTables: []string{"postgres.t"}}, true, ""},
		{"include-databases postgres, excluded", Flags{IncludeDatabases: []string{"postgres"}, ExcludeTables: []string{"postgres.t"}}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Build(tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Database("postgres"); got != tt.want {
				t.Fatalf("Database(postgres) = %v; want %v", got, tt.want)
			}
			if why := r.DatabaseReason("postgres"); !strings.HasPrefix(why, tt.because) {
				t.Fatalf("reason %q; want %q", why, tt.because)
			}
		})
	}
	var nilRules *Rules
	if nilRules.Database("postgres") || !nilRules.Database("shop") {
		t.Fatal("nil rules: postgres must be left out, other databases kept")
	}
}
