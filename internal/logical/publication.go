package logical

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// ErrConflict is returned when an object of ours already exists with a
// different definition. Callers offer --force (drop and recreate).
var ErrConflict = errors.New("exists with a different definition")

// TableSpec names one table of a publication and, optionally, the SQL
// predicate (row filter) rows must satisfy to be published.
type TableSpec struct {
	Schema, Name string
	// RowFilter is a boolean SQL expression over the table's columns (""
	// = every row). Row filters need PostgreSQL 15 or newer on the source.
	RowFilter string
}

func (t TableSpec) String() string { return t.Schema + "." + t.Name }

// publishAll is what our publications publish.
const publishAll = "insert, update, delete, truncate"

// CreatePublication creates publication name in the source database conn
// is connected to, publishing tables (nil = every table of the database,
// now and later when the user is a superuser; an empty non-nil slice = no
// table). It must run before CreateSlot (see the package comment).
//
// It is idempotent: when the publication exists with the same definition it
// returns nil; with a different one it returns an error wrapping
// ErrConflict (drop it with DropPublication and call again to recreate).
//
// Row filters need PostgreSQL 15+. A time filter produced by the selection
// rules ("col >= now() - interval '6 months'") is frozen to a constant
// computed now, since a publication's row filter must be immutable. A row
// filter over columns outside the table's replica identity is refused:
// PostgreSQL would make every UPDATE and DELETE of that table fail on the
// source.
func CreatePublication(ctx context.Context, conn *pgx.Conn, name string, tables []TableSpec) error {
	ver, err := pg.ServerVersion(ctx, conn)
	if err != nil {
		return fmt.Errorf("publication %s: %w", name, err)
	}
	specs := slices.Clone(tables)
	frozen := map[string]bool{} // tables whose time filter was frozen
	for i, t := range specs {
		if t.RowFilter == "" {
			continue
		}
		if ver < 150000 {
			return hint.Wrap(fmt.Errorf("publication %s: table %s has a row filter, but the source is PostgreSQL %d; publication row filters need PostgreSQL 15 or newer", name, t, ver/10000),
				"drop --table-filter/--time-filter for this table, run with --no-sync (copy only), or upgrade the source to PostgreSQL 15+")
		}
		if specs[i].RowFilter, err = freezeTimeFilters(ctx, conn, t); err != nil {
			return fmt.Errorf("publication %s: %w", name, err)
		}
		frozen[t.String()] = specs[i].RowFilter != t.RowFilter
	}
	allTables := false
	if tables == nil {
		var super bool
		if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
			return fmt.Errorf("publication %s: read role: %w", name, err)
		}
		if super {
			allTables = true
		} else if specs, err = allUserTables(ctx, conn); err != nil {
			return fmt.Errorf("publication %s: %w", name, err)
		}
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("publication %s: begin: %w", name, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	// Row filters were checked under standard literal rules (DDL cannot
	// be READ ONLY; the filters are the checked, re-emitted ones).
	if _, err := tx.Exec(ctx, selection.SessionSetup); err != nil {
		return fmt.Errorf("publication %s: set up session: %w", name, err)
	}

	existing, err := readPublication(ctx, tx, name, ver)
	if err != nil {
		return err
	}
	target := name
	if existing != nil {
		// Create the wanted definition under a scratch name inside this
		// transaction, read it back in PostgreSQL's own normal form, and
		// roll it back: an exact comparison, row filters included.
		target = "seren_probe_" + name[min(len(name), len(namePrefix)):]
		if len(target) > maxNameLen {
			target = target[:maxNameLen]
		}
	}
	if _, err := tx.Exec(ctx, createPublicationSQL(target, allTables, specs)); err != nil {
		return explainPublicationError(err, name)
	}
	if existing != nil {
		want, err := readPublication(ctx, tx, target, ver)
		if err != nil {
			return err
		}
		if diff := existing.diff(want, frozen); diff != "" {
			return hint.Wrap(fmt.Errorf("publication %s %w: %s", name, ErrConflict, diff),
				"re-run with --force to recreate it (the target must then be re-verified or re-copied)")
		}
		return nil // rolled back: nothing changed
	}
	for _, t := range specs {
		if t.RowFilter == "" {
			continue
		}
		// EXPLAIN runs PostgreSQL's own replica identity check for the
		// filter without touching rows or firing triggers.
		if _, err := tx.Exec(ctx, "EXPLAIN (COSTS OFF) DELETE FROM "+pg.Ident(t.Schema, t.Name)+" WHERE false"); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42P10" {
				return hint.Wrap(fmt.Errorf("publication %s: the row filter of table %s uses columns outside its replica identity, so PostgreSQL would reject every UPDATE and DELETE of that table on the source", name, t),
					fmt.Sprintf("filter on primary key columns only, or run on the source: ALTER TABLE %s REPLICA IDENTITY FULL; (or copy this table without sync: --no-sync)", pg.Ident(t.Schema, t.Name)))
			}
			if errors.As(err, &pgErr) && pgErr.Code == "55000" {
				continue // no replica identity at all: Validate warns about it
			}
			return fmt.Errorf("publication %s: check table %s: %w", name, t, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("publication %s: commit: %w", name, err)
	}
	return nil
}

func createPublicationSQL(name string, allTables bool, specs []TableSpec) string {
	var b strings.Builder
	b.WriteString("CREATE PUBLICATION ")
	b.WriteString(pg.Ident(name))
	switch {
	case allTables:
		b.WriteString(" FOR ALL TABLES")
	case len(specs) > 0:
		b.WriteString(" FOR TABLE ")
		for i, t := range specs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pg.Ident(t.Schema, t.Name))
			if t.RowFilter != "" {
				b.WriteString(" WHERE (")
				b.WriteString(t.RowFilter)
				b.WriteString(")")
			}
		}
	}
	b.WriteString(" WITH (publish = " + pg.Literal(publishAll) + ")")
	return b.String()
}

func explainPublicationError(err error, name string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42501":
			return hint.Wrap(fmt.Errorf("create publication %s: %s", name, pgErr.Message),
				"connect to the source as a superuser, or as the owner of every replicated table (CREATE PUBLICATION ... FOR TABLE needs table ownership)")
		case "0A000", "42P17", "42804":
			return hint.Wrap(fmt.Errorf("create publication %s: %s: %s", name, pgErr.Message, pgErr.Detail),
				"a publication row filter may use only the table's columns, built-in operators and immutable functions (no now(), current_date or user functions): replace them with constants, or drop the filter for sync")
		case "42P01":
			return fmt.Errorf("create publication %s: %s", name, pgErr.Message)
		}
	}
	return fmt.Errorf("create publication %s: %w", name, err)
}

// allUserTables lists the tables a FOR ALL TABLES publication would hold:
// ordinary tables that are not partitions, and partitioned roots (whose
// partitions, present and future, come with them).
func allUserTables(ctx context.Context, q pg.Querier) ([]TableSpec, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableSpec, error) {
		var t TableSpec
		return t, r.Scan(&t.Schema, &t.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	if out == nil {
		out = []TableSpec{}
	}
	return out, nil
}

// pubDef is a publication's definition as the catalog stores it.
type pubDef struct {
	allTables                       bool
	insert, update, delete, truncat bool
	tables                          []TableSpec // sorted; RowFilter as pg_get_expr prints it
}

func readPublication(ctx context.Context, q pg.Querier, name string, ver int) (*pubDef, error) {
	var d pubDef
	err := q.QueryRow(ctx, `SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1`, name).
		Scan(&d.allTables, &d.insert, &d.update, &d.delete, &d.truncat)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read publication %s: %w", name, err)
	}
	qual := "''"
	if ver >= 150000 {
		qual = "coalesce(pg_get_expr(pr.prqual, pr.prrelid), '')"
	}
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname, `+qual+`
FROM pg_publication_rel pr
JOIN pg_publication p ON p.oid = pr.prpubid
JOIN pg_class c ON c.oid = pr.prrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.pubname = $1
ORDER BY 1, 2`, name)
	if err != nil {
		return nil, fmt.Errorf("read publication %s tables: %w", name, err)
	}
	d.tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableSpec, error) {
		var t TableSpec
		return t, r.Scan(&t.Schema, &t.Name, &t.RowFilter)
	})
	if err != nil {
		return nil, fmt.Errorf("read publication %s tables: %w", name, err)
	}
	return &d, nil
}

// frozenConstRE matches the constant a frozen time filter compares with.
var frozenConstRE = regexp.MustCompile(`'[^']*'::(timestamp with time zone|timestamp without time zone|date)`)

// diff describes how d differs from want ("" = same). For the tables in
// frozen, the cut-off constants of time filters are not compared: a re-run
// freezes "6 months ago" to a later instant, and that is the same filter.
func (d *pubDef) diff(want *pubDef, frozen map[string]bool) string {
	var out []string
	if d.allTables != want.allTables {
		out = append(out, fmt.Sprintf("FOR ALL TABLES is %v, want %v", d.allTables, want.allTables))
	}
	if d.insert != want.insert || d.update != want.update || d.delete != want.delete || d.truncat != want.truncat {
		out = append(out, "publishes other operations than "+publishAll)
	}
	have := map[string]string{}
	for _, t := range d.tables {
		have[t.String()] = t.RowFilter
	}
	wantSet := map[string]bool{}
	for _, t := range want.tables {
		wantSet[t.String()] = true
		f, ok := have[t.String()]
		w := t.RowFilter
		if frozen[t.String()] {
			f, w = frozenConstRE.ReplaceAllString(f, "?"), frozenConstRE.ReplaceAllString(w, "?")
		}
		switch {
		case !ok:
			out = append(out, "lacks table "+t.String())
		case f != w:
			out = append(out, fmt.Sprintf("table %s has row filter %q, want %q", t, f, t.RowFilter))
		}
	}
	for _, t := range d.tables {
		if !wantSet[t.String()] {
			out = append(out, "has extra table "+t.String())
		}
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more differences", len(out)-5))
	}
	return strings.Join(out, "; ")
}

// DropPublication drops publication name in the database conn is
// connected to, if it exists.
func DropPublication(ctx context.Context, conn pg.Querier, name string) error {
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pg.Ident(name)); err != nil {
		return fmt.Errorf("drop publication %s: %w", name, err)
	}
	return nil
}

// PublicationExists reports whether publication name exists in the
// database conn is connected to.
func PublicationExists(ctx context.Context, conn pg.Querier, name string) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", name).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up publication %s: %w", name, err)
	}
	return ok, nil
}

// timeFilterRE matches the predicate the selection rules generate for a
// time filter: ("col" >= pg_catalog.now() - interval '6 months').
var timeFilterRE = regexp.MustCompile(`\(((?:"(?:[^"]|"")+")|[a-z_][a-z0-9_$]*) >= (?:pg_catalog\.)?now\(\) - interval '([0-9]+ [a-z]+)'\)`)

// freezeTimeFilters replaces each time-filter predicate of t's row filter
// by a comparison with a constant of the column's type computed on the
// source now (a publication's row filter must be immutable).
func freezeTimeFilters(ctx context.Context, q pg.Querier, t TableSpec) (string, error) {
	var firstErr error
	inQuotes := quotedAt(t.RowFilter)
	var b strings.Builder
	last := 0
	for _, loc := range timeFilterRE.FindAllStringIndex(t.RowFilter, -1) {
		b.WriteString(t.RowFilter[last:loc[0]])
		last = loc[1]
		m := t.RowFilter[loc[0]:loc[1]]
		if inQuotes[loc[0]] {
			// inside a quoted name or a literal: text, not a time filter
			b.WriteString(m)
			continue
		}
		b.WriteString(freezeOne(ctx, q, t, m, &firstErr))
	}
	b.WriteString(t.RowFilter[last:])
	return b.String(), firstErr
}

// timeFilterTypes are the column types (as format_type prints them) a
// time filter's cut-off is cast to; nothing else is pasted into a filter.
var timeFilterTypes = regexp.MustCompile(`^(date|timestamp(\([0-6]\))? with(out)? time zone)$`)

// quotedAt reports, for each byte of s, whether it lies inside a quoted
// identifier or a string literal (as the deparser writes them: quotes
// inside are doubled, so toggling on each quote character is exact).
func quotedAt(s string) []bool {
	out := make([]bool, len(s))
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if q == 0 && (c == '"' || c == '\'') {
			q = c
			out[i] = true
			continue
		}
		out[i] = q != 0
		if q != 0 && c == q {
			q = 0
		}
	}
	return out
}

// freezeOne freezes one time-filter predicate m of t's row filter.
func freezeOne(ctx context.Context, q pg.Querier, t TableSpec, m string, errp *error) string {
	firstErr := *errp
	defer func() { *errp = firstErr }()
	{
		sub := timeFilterRE.FindStringSubmatch(m)
		col := sub[1]
		if strings.HasPrefix(col, `"`) {
			col = strings.ReplaceAll(col[1:len(col)-1], `""`, `"`)
		}
		var typ string
		err := q.QueryRow(ctx, `
SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped`, pg.Ident(t.Schema, t.Name), col).Scan(&typ)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("time filter on %s: column %q: %w", t, col, err)
			}
			return m
		}
		if !timeFilterTypes.MatchString(typ) {
			if firstErr == nil {
				firstErr = fmt.Errorf("time filter on %s: column %q is of type %s, not date or timestamp", t, col, typ)
			}
			return m
		}
		var v string
		if err := q.QueryRow(ctx, "SELECT (now() - $1::interval)::"+typ+"::text", sub[2]).Scan(&v); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("time filter on %s: compute the cut-off as %s: %w", t, typ, err)
			}
			return m
		}
		return "(" + pg.Ident(col) + " >= " + pg.Literal(v) + "::" + typ + ")"
	}
}
