package selection

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// fileRules is the TOML rules file (see docs/selection.md).
type fileRules struct {
	IncludeDatabases []string                `toml:"include_databases"`
	ExcludeDatabases []string                `toml:"exclude_databases"`
	Databases        map[string]fileDatabase `toml:"databases"`
}

// fileDatabase is one [databases.NAME] section; NAME "*" applies to every
// replicated database. Table names are "table" (schema public) or
// "schema.table".
type fileDatabase struct {
	IncludeTables    []string `toml:"include_tables"`
	ExcludeTables    []string `toml:"exclude_tables"`
	SchemaOnlyTables []string `toml:"schema_only_tables"`
	// SchemaOnly is the original tool's (v3) spelling of schema_only_tables.
	SchemaOnly   []string          `toml:"schema_only"`
	TableFilters []fileTableFilter `toml:"table_filters"`
	TimeFilters  []fileTimeFilter  `toml:"time_filters"`
}

// Schema, from the original tool (v3), names the table's schema apart:
// table = "events", schema = "analytics" is table = "analytics.events".
type fileTableFilter struct {
	Table  string `toml:"table"`
	Schema string `toml:"schema"`
	Where  string `toml:"where"`
}

type fileTimeFilter struct {
	Table  string `toml:"table"`
	Schema string `toml:"schema"`
	Column string `toml:"column"`
	Last   string `toml:"last"`
}

const fileKeys = "include_databases, exclude_databases, and in [databases.NAME]: include_tables, exclude_tables, " +
	"schema_only_tables (or schema_only), [[table_filters]] (table, schema, where), " +
	"[[time_filters]] (table, schema, column, last)"

// loadFile reads and validates a rules file.
func loadFile(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, hint.Wrap(fmt.Errorf("--config %q: reading rules file: %w", path, err),
			"pass the path of a TOML rules file (format: docs/selection.md)")
	}
	var fr fileRules
	md, err := toml.Decode(string(data), &fr)
	if err != nil {
		return nil, hint.Wrap(fmt.Errorf("--config %q: %w", path, err),
			"fix the TOML syntax (format: docs/selection.md)")
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = fmt.Sprintf("%q", k.String())
		}
		word := "key"
		if len(keys) > 1 {
			word = "keys"
		}
		return nil, hint.Wrap(fmt.Errorf("%s: unknown %s %s", path, word, strings.Join(keys, ", ")),
			"known keys are "+fileKeys)
	}
	return fr.rules(path)
}

// rules validates the decoded file and turns it into Rules.
func (fr *fileRules) rules(path string) (*Rules, error) {
	at := func(key, value string) origin {
		return origin{where: path + ": " + key, label: key + " in " + path, value: value}
	}
	r := &Rules{}
	dbs := func(key string, vals []string) ([]dbEntry, error) {
		var out []dbEntry
		for i, v := range vals {
			name := strings.TrimSpace(v)
			if name == "" {
				return nil, at(fmt.Sprintf("%s[%d]", key, i), v).errorf("empty database name")
			}
			out = append(out, dbEntry{name: name, from: at(key, v)})
		}
		return out, nil
	}
	var err error
	if r.includeDBs, err = dbs("include_databases", fr.IncludeDatabases); err != nil {
		return nil, err
	}
	if r.excludeDBs, err = dbs("exclude_databases", fr.ExcludeDatabases); err != nil {
		return nil, err
	}
	if len(r.includeDBs) > 0 && len(r.excludeDBs) > 0 {
		return nil, conflict(r.excludeDBs[0].from, r.includeDBs[0].from)
	}

	names := make([]string, 0, len(fr.Databases))
	for name := range fr.Databases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf(`%s: [databases.""]: empty database name (use [databases."*"] for every database)`, path)
		}
		sec := fr.Databases[name]
		db := name
		if name == "*" {
			db = ""
		}
		prefix := "databases." + tomlKey(name) + "."
		refs := func(key string, vals []string) ([]refEntry, error) {
			var out []refEntry
			for _, v := range vals {
				o := at(prefix+key, v)
				ref, err := parseLocalRef(db, v)
				if err != nil {
					return nil, o.wrap(err)
				}
				out = append(out, refEntry{ref: ref, from: o})
			}
			return out, nil
		}
		inc, err := refs("include_tables", sec.IncludeTables)
		if err != nil {
			return nil, err
		}
		exc, err := refs("exclude_tables", sec.ExcludeTables)
		if err != nil {
			return nil, err
		}
		so, err := refs("schema_only_tables", sec.SchemaOnlyTables)
		if err != nil {
			return nil, err
		}
		so3, err := refs("schema_only", sec.SchemaOnly)
		if err != nil {
			return nil, err
		}
		so = append(so, so3...)
		r.includeTables = append(r.includeTables, inc...)
		r.excludeTables = append(r.excludeTables, exc...)
		r.schemaOnly = append(r.schemaOnly, so...)

		for i, tf := range sec.TableFilters {
			key := fmt.Sprintf("%stable_filters[%d]", prefix, i)
			if err := required(path, key, "table", tf.Table, "where", tf.Where); err != nil {
				return nil, err
			}
			ref, err := parseLocalRef(db, withSchema(tf.Schema, tf.Table))
			if err != nil {
				return nil, at(key+".table", tf.Table).wrap(err)
			}
			o := at(key+".where", tf.Where)
			pred, err := checkPredicate(tf.Where)
			if err != nil {
				return nil, o.wrap(err)
			}
			r.tableFilters = append(r.tableFilters, filterEntry{ref: ref, where: pred, from: o})
		}
		for i, tf := range sec.TimeFilters {
			key := fmt.Sprintf("%stime_filters[%d]", prefix, i)
			if err := required(path, key, "table", tf.Table, "column", tf.Column, "last", tf.Last); err != nil {
				return nil, err
			}
			ref, err := parseLocalRef(db, withSchema(tf.Schema, tf.Table))
			if err != nil {
				return nil, at(key+".table", tf.Table).wrap(err)
			}
			col, err := parseColumn(tf.Column)
			if err != nil {
				return nil, at(key+".column", tf.Column).wrap(err)
			}
			o := at(key+".last", tf.Last)
			win, err := parseWindow(tf.Last)
			if err != nil {
				return nil, o.wrap(err)
			}
			r.timeFilters = append(r.timeFilters, timeEntry{ref: ref, column: col, win: win, from: o})
		}
	}
	return r, nil
}

// withSchema writes the v3 pair (schema, table) in the table syntax; with
// a schema, both are taken literally (as the original tool does).
func withSchema(schema, table string) string {
	schema = strings.TrimSpace(schema)
	if schema == "" {
		return table
	}
	return quoteName(schema) + "." + quoteName(strings.TrimSpace(table))
}

// required checks that each named field (name, value pairs) is set.
func required(path, key string, pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return fmt.Errorf("%s: %s: missing %q", path, key, pairs[i])
		}
	}
	return nil
}

// tomlKey writes a database name as a TOML key, quoted when it is not a
// bare key.
func tomlKey(s string) string {
	for _, c := range s {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
