// Package dbcompare compares two databases for tests, independently of the
// product's own verifier: per-table row counts and order-independent
// content hashes (duplicates count), sequence states, and the definitions
// of indexes, constraints, views, triggers, functions, types, comments,
// ownership and grants, read from the catalogs of each side.
package dbcompare

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Snapshot is everything compared, as sorted "kind name: value" lines.
type Snapshot []string

// Take reads a database's comparable state.
func Take(ctx context.Context, conn *pgx.Conn) (Snapshot, error) {
	var out []string
	add := func(kind, q string) error {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				return fmt.Errorf("%s: %w", kind, err)
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = fmt.Sprint(v)
			}
			out = append(out, kind+" "+strings.Join(parts, " | "))
		}
		return rows.Err()
	}
	userNS := `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`
	queries := []struct{ kind, q string }{
		{"schema", `SELECT n.nspname, pg_get_userbyid(n.nspowner), coalesce(n.nspacl::text, ''), coalesce(obj_description(n.oid, 'pg_namespace'), '') FROM pg_namespace n WHERE ` + userNS},
		{"relation", `SELECT n.nspname, c.relname, c.relkind, c.relpersistence, pg_get_userbyid(c.relowner), coalesce(c.relacl::text, ''),
			coalesce(obj_description(c.oid, 'pg_class'), ''), c.relispartition, coalesce(pg_get_expr(c.relpartbound, c.oid), ''), c.relreplident, c.relrowsecurity
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + userNS + ` AND c.relkind IN ('r','p','v','m','S','f','c')`},
		{"column", `SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, a.attgenerated,
			coalesce(pg_get_expr(d.adbin, d.adrelid), ''), coalesce(col_description(c.oid, a.attnum), ''), coalesce(a.attacl::text, '')
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			WHERE ` + userNS + ` AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f','c')`},
		{"index", `SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`},
		{"constraint", `SELECT n.nspname, coalesce(c.relname, ''), co.conname, co.contype, pg_get_constraintdef(co.oid), co.convalidated,
			coalesce(obj_description(co.oid, 'pg_constraint'), '')
			FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace LEFT JOIN pg_class c ON c.oid = co.conrelid WHERE ` + userNS},
		{"view", `SELECT schemaname, viewname, definition FROM pg_views WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`},
		{"matview", `SELECT schemaname, matviewname, definition, ispopulated FROM pg_matviews`},
		{"trigger", `SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal`},
		{"function", `SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner),
			coalesce(p.proacl::text, ''), coalesce(obj_description(p.oid, 'pg_proc'), '')
			FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ` + userNS + ` AND p.prokind IN ('f','p','w')
			AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`},
		{"type", `SELECT n.nspname, t.typname, t.typtype, pg_get_userbyid(t.typowner), coalesce(obj_description(t.oid, 'pg_type'), ''),
			coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), ''),
			coalesce(format_type(t.typbasetype, t.typtypmod), ''), coalesce(t.typacl::text, '')
			FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ` + userNS + ` AND t.typtype IN ('e','d','c','r')
			AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')`},
		{"extension", `SELECT extname, extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace`},
		{"policy", `SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, coalesce(qual, ''), coalesce(with_check, '') FROM pg_policies`},
		{"rule", `SELECT schemaname, tablename, rulename, definition FROM pg_rules WHERE schemaname NOT IN ('pg_catalog')`},
		{"defaultacl", `SELECT pg_get_userbyid(defaclrole), coalesce(n.nspname, ''), defaclobjtype, defaclacl::text FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace`},
		{"largeobject", `SELECT count(*), coalesce(sum(length(lo_get(oid))), 0) FROM pg_largeobject_metadata`},
		{"database", `SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba), coalesce(shobj_description(oid, 'pg_database'), ''), datconnlimit
			FROM pg_database WHERE datname = current_database()`},
		{"dbsetting", `SELECT coalesce(r.rolname, ''), s.setconfig::text FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())`},
	}
	for _, q := range queries {
		if err := add(q.kind, q.q); err != nil {
			return nil, err
		}
	}
	// Sequences.
	seqs, err := names(ctx, conn, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND `+userNS)
	if err != nil {
		return nil, err
	}
	for _, s := range seqs {
		if err := add("sequence-state "+s[0]+"."+s[1], "SELECT last_value, is_called FROM "+pg.Ident(s[0], s[1])); err != nil {
			return nil, err
		}
	}
	// Table contents: count and order-independent hash of every row.
	tables, err := names(ctx, conn, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') AND `+userNS)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		q := fmt.Sprintf(`SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0) FROM %s t`, pg.Ident(t[0], t[1]))
		if err := add("rows "+t[0]+"."+t[1], q); err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

func names(ctx context.Context, conn *pgx.Conn, q string) ([][2]string, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	var a, b string
	_, err = pgx.ForEachRow(rows, []any{&a, &b}, func() error { out = append(out, [2]string{a, b}); return nil })
	return out, err
}

// Equal fails t with a readable diff when the two databases differ.
func Equal(t testing.TB, src, dst *pgx.Conn) Snapshot {
	t.Helper()
	ctx := context.Background()
	a, err := Take(ctx, src)
	if err != nil {
		t.Fatalf("read source: %v", err)
	}
	b, err := Take(ctx, dst)
	if err != nil {
		t.Fatalf("read target: %v", err)
	}
	if d := Diff(a, b); d != "" {
		t.Fatalf("source and target differ:\n%s", d)
	}
	return a
}

// Diff returns lines only in a ("-") or only in b ("+").
func Diff(a, b Snapshot) string {
	in := func(s Snapshot) map[string]int {
		m := map[string]int{}
		for _, l := range s {
			m[l]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var d []string
	for _, l := range a {
		if mb[l] == 0 {
			d = append(d, "- "+l)
		}
	}
	for _, l := range b {
		if ma[l] == 0 {
			d = append(d, "+ "+l)
		}
	}
	if len(d) > 60 {
		d = append(d[:60], fmt.Sprintf("… and %d more", len(d)-60))
	}
	return strings.Join(d, "\n")
}
