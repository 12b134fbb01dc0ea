// Package catalog reads what the engine needs to know about a server from
// its system catalogs: databases with their properties and sizes, tables
// with their keys, sizes and kinds, sequences. Read-only; no DDL.
package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// Database describes one database of a server.
type Database struct {
	Name       string
	Owner      string
	Encoding   string
	Collate    string
	Ctype      string
	LocaleProv string // 'c' libc, 'i' icu, 'b' builtin (17+); "" before PG 15
	IcuLocale  string // the ICU (or, 17+, builtin) locale: daticulocale, datlocale from 17

	ConnLimit  int
	Comment    string
	SizeBytes  int64
	AllowConn  bool
	IsTemplate bool
}

// ListDatabases returns the user databases of the server (no templates,
// none that refuse connections), filtered by rules (nil = all), by name.
func ListDatabases(ctx context.Context, q pg.Querier, rules *selection.Rules) ([]Database, error) {
	ver, err := pg.ServerVersion(ctx, q)
	if err != nil {
		return nil, err
	}
	locale := "''::text, ''::text"
	switch {
	case ver >= 170000: // 17 renamed daticulocale to datlocale (it also holds the builtin provider's locale)
		locale = "d.datlocprovider::text, coalesce(d.datlocale, '')"
	case ver >= 150000:
		locale = "d.datlocprovider::text, coalesce(d.daticulocale, '')"
	}
	rows, err := q.Query(ctx, `
SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, `+locale+`,
       d.datconnlimit, coalesce(shobj_description(d.oid, 'pg_database'), ''),
       CASE WHEN has_database_privilege(d.datname, 'CONNECT') THEN pg_database_size(d.oid) ELSE 0 END,
       d.datallowconn, d.datistemplate
FROM pg_database d
WHERE NOT d.datistemplate AND d.datallowconn
ORDER BY d.datname`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Database, error) {
		var d Database
		err := r.Scan(&d.Name, &d.Owner, &d.Encoding, &d.Collate, &d.Ctype, &d.LocaleProv, &d.IcuLocale,
			&d.ConnLimit, &d.Comment, &d.SizeBytes, &d.AllowConn, &d.IsTemplate)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	var out []Database
	for _, d := range all {
		if rules == nil || rules.Database(d.Name) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Table describes one table (or partition root) of a database.
type Table struct {
	Schema, Name string
	OID          uint32
	// Kind: 'r' ordinary, 'p' partitioned (no own data).
	Kind byte
	// IsPartition: a leaf of a partitioned table (data copied per leaf).
	IsPartition bool
	Unlogged    bool
	SizeBytes   int64 // heap size, for scheduling and estimates
	EstRows     int64 // reltuples estimate (-1 unknown)
	// PrimaryKey lists the primary key columns in key order (nil: no PK).
	PrimaryKey []string
	// ReplicaIdentity: 'd' default, 'n' nothing, 'f' full, 'i' index.
	ReplicaIdentity byte
	HasReplicaIndex bool
	// Columns are the non-generated columns in attnum order (what COPY moves).
	Columns []string
	// HasGenerated reports stored generated columns (excluded from COPY).
	HasGenerated bool
}

// QualifiedName is the quoted schema.table.
func (t Table) QualifiedName() string { return pg.Ident(t.Schema, t.Name) }

// String is schema.table unquoted, for messages.
func (t Table) String() string { return t.Schema + "." + t.Name }

// ListTables returns every user table holding data (ordinary tables and
// partition leaves; not partitioned parents, views or foreign tables),
// largest first.
func ListTables(ctx context.Context, q pg.Querier) ([]Table, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname, c.oid, c.relkind::text, c.relispartition, c.relpersistence = 'u',
       pg_relation_size(c.oid), c.reltuples::bigint,
       coalesce((SELECT array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
       coalesce((SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), '{}'),
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY pg_relation_size(c.oid) DESC, n.nspname, c.relname`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		var kind, ident string
		err := r.Scan(&t.Schema, &t.Name, &t.OID, &kind, &t.IsPartition, &t.Unlogged, &t.SizeBytes, &t.EstRows,
			&t.PrimaryKey, &ident, &t.HasReplicaIndex, &t.Columns, &t.HasGenerated)
		if kind != "" {
			t.Kind = kind[0]
		}
		if ident != "" {
			t.ReplicaIdentity = ident[0]
		}
		if len(t.PrimaryKey) == 0 {
			t.PrimaryKey = nil
		}
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return out, nil
}
