package replicator

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/copier"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// tablePlan is what happens to each table of one database.
type tablePlan struct {
	copy       []copier.Task
	schemaOnly []catalog.Table
	// exclude are (schema, table) pairs left out of the schema entirely.
	exclude [][2]string
}

func tablesOf(tasks []copier.Task) []catalog.Table {
	out := make([]catalog.Table, len(tasks))
	for i, t := range tasks {
		out[i] = t.Table
	}
	return out
}

// planTables applies the selection rules to the tables of db.
func planTables(ctx context.Context, src *pgx.Conn, db string, opts Options) (tablePlan, error) {
	var p tablePlan
	tables, err := catalog.ListTables(ctx, src)
	if err != nil {
		return p, fmt.Errorf("source: %w", err)
	}
	// Partitioned parents (and leaves of excluded parents) are decided by
	// the parent's rule.
	rows, err := src.Query(ctx, `
SELECT n.nspname, c.relname, c.oid,
       coalesce((SELECT array_agg(a.relid::oid) FROM pg_partition_ancestors(c.oid) a WHERE a.relid <> c.oid), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('p', 'r') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`)
	if err != nil {
		return p, fmt.Errorf("source: list partitions: %w", err)
	}
	type rel struct {
		schema, name string
		ancestors    []uint32
	}
	rels := map[uint32]rel{}
	var r rel
	var oid uint32
	if _, err := pgx.ForEachRow(rows, []any{&r.schema, &r.name, &oid, &r.ancestors}, func() error {
		rels[oid] = rel{r.schema, r.name, append([]uint32(nil), r.ancestors...)}
		return nil
	}); err != nil {
		return p, fmt.Errorf("source: list partitions: %w", err)
	}
	excluded := map[uint32]bool{}
	for oid, r := range rels {
		if r.schema == copier.CheckpointSchema {
			excluded[oid] = true
			continue
		}
		if opts.Rules != nil && !opts.Rules.Table(db, r.schema, r.name).Include {
			excluded[oid] = true
		}
	}
	for oid, r := range rels {
		for _, a := range r.ancestors {
			if excluded[a] {
				excluded[oid] = true
			}
		}
	}
	for oid := range excluded {
		r := rels[oid]
		if r.schema != copier.CheckpointSchema {
			p.exclude = append(p.exclude, [2]string{r.schema, r.name})
		}
	}
	for _, t := range tables {
		if excluded[t.OID] || t.Schema == copier.CheckpointSchema {
			continue
		}
		var pred []string
		schemaOnly := false
		if opts.Rules != nil {
			rule := opts.Rules.Table(db, t.Schema, t.Name)
			schemaOnly = rule.SchemaOnly
			if rule.Predicate != "" {
				pred = append(pred, rule.Predicate)
			}
			// A partition inherits its parent's row filter and schema-only rule.
			for _, a := range rels[t.OID].ancestors {
				ar := rels[a]
				prule := opts.Rules.Table(db, ar.schema, ar.name)
				schemaOnly = schemaOnly || prule.SchemaOnly
				if prule.Predicate != "" {
					pred = append(pred, prule.Predicate)
				}
			}
		}
		if schemaOnly {
			p.schemaOnly = append(p.schemaOnly, t)
			continue
		}
		task := copier.Task{Table: t, Predicate: strings.Join(pred, " AND ")}
		task.Binary, err = binaryCopyable(ctx, src, t)
		if err != nil {
			return p, err
		}
		p.copy = append(p.copy, task)
	}
	return p, nil
}

// binaryCopyable reports whether every copied column has a built-in type
// (binary COPY carries type OIDs inside arrays and records, which differ
// between servers for user-defined types).
func binaryCopyable(ctx context.Context, src pg.Querier, t catalog.Table) (bool, error) {
	var user bool
	err := src.QueryRow(ctx, `
SELECT EXISTS (
  SELECT 1 FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_type el ON el.oid = ty.typelem AND ty.typcategory = 'A'
  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    AND (ty.oid >= 16384 OR coalesce(el.oid, 0) >= 16384 OR ty.typtype NOT IN ('b', 'p')
         OR coalesce(el.typtype, 'b') <> 'b' OR ty.oid IN ('money'::regtype, 'aclitem'::regtype)))`, t.OID).Scan(&user)
	if err != nil {
		return false, fmt.Errorf("inspect column types of %s: %w", t, err)
	}
	return !user, nil
}
