package cmdutil

import (
	"context"
	"fmt"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// ListTables returns the user tables of the database u as schema.table.
func ListTables(ctx context.Context, u pg.URL) ([]string, error) {
	c, err := pg.Connect(ctx, u, "source")
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("source %s: list tables: %w", u.Database(), err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("source %s: list tables: %w", u.Database(), err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source %s: list tables: %w", u.Database(), err)
	}
	return out, nil
}

// CheckTables fails (a usage error, with "did you mean") when an
// --include-tables, --exclude-tables or --schema-only-tables entry names
// no table of the selected databases dbs on the source: a selection that
// matches nothing is a typo, not a request to do nothing.
func CheckTables(ctx context.Context, src pg.URL, dbs []string, f selection.Flags) error {
	type entry struct{ flag, value string }
	var entries []entry
	for _, e := range f.IncludeTables {
		entries = append(entries, entry{"--include-tables", e})
	}
	for _, e := range f.ExcludeTables {
		entries = append(entries, entry{"--exclude-tables", e})
	}
	for _, e := range f.SchemaOnlyTables {
		entries = append(entries, entry{"--schema-only-tables", e})
	}
	if len(entries) == 0 {
		return nil
	}
	type table struct{ db, schema, name string }
	var tables []table
	var names []string
	for _, db := range dbs {
		ts, err := ListTables(ctx, src.WithDatabase(db))
		if err != nil {
			return err
		}
		for _, t := range ts {
			schema, name, _ := strings.Cut(t, ".")
			tables = append(tables, table{db, schema, name})
			names = append(names, db+"."+t)
			if schema == "public" {
				names = append(names, db+"."+name)
			}
		}
	}
	for _, e := range entries {
		// The entry matches a table when, used as an exclusion, it
		// leaves that table out.
		r, err := selection.Build(selection.Flags{ExcludeTables: []string{e.value}})
		if err != nil {
			return clio.Usage(fmt.Errorf("%s %s: %w", e.flag, e.value, err))
		}
		matched := false
		for _, t := range tables {
			if !r.Table(t.db, t.schema, t.name).Include {
				matched = true
				break
			}
		}
		if !matched {
			msg := fmt.Sprintf("%s %s: no such table in the selected databases (%s)", e.flag, e.value, strings.Join(dbs, ", "))
			if s := clio.Closest(e.value, names); s != "" {
				msg += "; did you mean " + s + "?"
			}
			return clio.Usage(fmt.Errorf("%s", msg))
		}
	}
	return nil
}

// CheckSelection runs CheckTables for the databases rules select, when
// any table entry was given.
func CheckSelection(ctx context.Context, src pg.URL, rules *selection.Rules, sel *SelectionFlags) error {
	if len(sel.IncludeTables)+len(sel.ExcludeTables)+len(sel.SchemaOnlyTables) == 0 {
		return nil
	}
	dbs, err := logical.Databases(ctx, src, rules)
	if err != nil {
		return err
	}
	return CheckTables(ctx, src, dbs, sel.Flags)
}
