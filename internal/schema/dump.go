package schema

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/copier"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/pgtools"
)

// Dumper runs pg_dump/pg_restore for one database at one snapshot.
type Dumper struct {
	Tools          pgtools.Tools
	Source, Target pg.URL // database URLs
	Snapshot       string
	// ExcludeTables are qualified names (schema, table) left out entirely.
	ExcludeTables [][2]string
	// WorkDir holds the post-data archive (DDL only, small).
	WorkDir string
}

func (d *Dumper) dumpArgs(section string) []string {
	args := []string{"--format=custom", "--section=" + section, "--no-publications", "--no-subscriptions",
		"--no-tablespaces", "--no-security-labels", "--exclude-schema=" + quotePattern(copier.CheckpointSchema)}
	if d.Snapshot != "" {
		args = append(args, "--snapshot="+d.Snapshot)
	}
	for _, t := range d.ExcludeTables {
		args = append(args, "--exclude-table="+quotePattern(t[0])+"."+quotePattern(t[1]))
	}
	return args
}

// restoreOptions makes pg_restore's sessions ignore settings of the target
// database that would break the restore (copied from the source, e.g.
// default_transaction_read_only = on after cutover --block-writes, or a
// short statement_timeout): session options outrank database settings.
const restoreOptions = "PGOPTIONS=-c default_transaction_read_only=off -c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0"

// quotePattern makes a name a literal pg_dump pattern.
func quotePattern(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// PreData restores types, functions, tables (without indexes and
// constraints), sequences, views, extensions, comments, ownership and
// privileges, in one target transaction.
func (d *Dumper) PreData(ctx context.Context) error {
	dump := d.Tools.Command(ctx, "pg_dump", d.Source, d.dumpArgs("pre-data")...)
	restore := d.Tools.Command(ctx, "pg_restore", d.Target, "--section=pre-data", "--exit-on-error", "--single-transaction")
	restore.Env = append(restore.Env, restoreOptions)
	if err := pgtools.Pipe(dump, restore, d.Source, d.Target); err != nil {
		return fmt.Errorf("schema (pre-data) of %s: %w", d.Source.Database(), err)
	}
	return nil
}

// LargeObjects copies large objects at the snapshot, if there are any.
func (d *Dumper) LargeObjects(ctx context.Context, src *pgx.Conn) (int64, error) {
	var n int64
	if err := src.QueryRow(ctx, "SELECT count(*) FROM pg_largeobject_metadata").Scan(&n); err != nil {
		return 0, fmt.Errorf("count large objects: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	args := append(d.dumpArgs("data"), "--exclude-table-data=*.*", "--blobs")
	dump := d.Tools.Command(ctx, "pg_dump", d.Source, args...)
	restore := d.Tools.Command(ctx, "pg_restore", d.Target, "--section=data", "--exit-on-error", "--single-transaction")
	restore.Env = append(restore.Env, restoreOptions)
	if err := pgtools.Pipe(dump, restore, d.Source, d.Target); err != nil {
		return 0, fmt.Errorf("large objects of %s: %w", d.Source.Database(), err)
	}
	return n, nil
}

// PostData is the post-data section split in two: the indexes and
// constraints of each copied table, built as soon as its rows are in, and
// the rest (foreign keys, triggers, rules, policies, materialized view
// refresh, partition index attachments, comments on them), applied at the
// end in parallel.
type PostData struct {
	d       *Dumper
	archive string
	// byTable maps a table OID to its TOC lines (indexes, constraints).
	byTable map[uint32][]tocEntry
	rest    []tocEntry
	mu      sync.Mutex
}

type tocEntry struct {
	line   string
	desc   string
	schema string
	table  string // for entries tagged "table name" (constraints, triggers, rules, policies)
	name   string
	// fkTables are the referencing and referenced tables of a foreign key.
	fkTables [2]uint32
}

// PreparePostData dumps the post-data section (DDL only) to the work dir
// and sorts its entries per table. copied lists the tables whose rows this
// run copies.
func (d *Dumper) PreparePostData(ctx context.Context, src *pgx.Conn, copied []catalog.Table) (*PostData, error) {
	if err := os.MkdirAll(d.WorkDir, 0o700); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	archive := filepath.Join(d.WorkDir, "post-data.dump")
	args := append(d.dumpArgs("post-data"), "--file="+archive)
	if err := pgtools.Run(d.Tools.Command(ctx, "pg_dump", d.Source, args...), d.Source); err != nil {
		return nil, fmt.Errorf("schema (post-data) of %s: %w", d.Source.Database(), err)
	}
	list := d.Tools.Offline(ctx, "pg_restore", "--list", archive)
	var out bytes.Buffer
	list.Stdout = &out
	if err := pgtools.Run(list); err != nil {
		return nil, fmt.Errorf("list post-data of %s: %w", d.Source.Database(), err)
	}
	// Which table does each index / constraint belong to?
	owner := map[string]uint32{} // "1259:oid" or "2606:oid" → table oid
	rows, err := src.Query(ctx, `
SELECT '1259:' || indexrelid::text, indrelid FROM pg_index
UNION ALL
SELECT '2606:' || oid::text, conrelid FROM pg_constraint WHERE conrelid <> 0 AND contype IN ('p', 'u', 'x')`)
	if err != nil {
		return nil, fmt.Errorf("map indexes to tables: %w", err)
	}
	var key string
	var rel uint32
	if _, err := pgx.ForEachRow(rows, []any{&key, &rel}, func() error { owner[key] = rel; return nil }); err != nil {
		return nil, fmt.Errorf("map indexes to tables: %w", err)
	}
	// The two tables of each foreign key, to schedule those that share a
	// table one after another (see Rest).
	fkTables := map[uint32][2]uint32{}
	frows, err := src.Query(ctx, `SELECT oid, conrelid, confrelid FROM pg_constraint WHERE contype = 'f'`)
	if err != nil {
		return nil, fmt.Errorf("map foreign keys to tables: %w", err)
	}
	var fk, a, b uint32
	if _, err := pgx.ForEachRow(frows, []any{&fk, &a, &b}, func() error { fkTables[fk] = [2]uint32{a, b}; return nil }); err != nil {
		return nil, fmt.Errorf("map foreign keys to tables: %w", err)
	}
	copiedSet := map[uint32]bool{}
	for _, t := range copied {
		copiedSet[t.OID] = true
	}
	p := &PostData{d: d, archive: archive, byTable: map[uint32][]tocEntry{}}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		e, cat, oid, ok := parseTOC(line)
		if !ok {
			continue
		}
		if (e.desc == "INDEX" && cat == 1259) || (e.desc == "CONSTRAINT" && cat == 2606) {
			if rel, ok := owner[fmt.Sprintf("%d:%d", cat, oid)]; ok && copiedSet[rel] {
				p.byTable[rel] = append(p.byTable[rel], e)
				continue
			}
		}
		if e.desc == "FK CONSTRAINT" && cat == 2606 {
			e.fkTables = fkTables[oid]
		}
		p.rest = append(p.rest, e)
	}
	return p, nil
}

// parseTOC parses "3217; 2606 16391 CONSTRAINT public a a_pkey postgres".
func parseTOC(line string) (tocEntry, int, uint32, bool) {
	_, rest, ok := strings.Cut(line, "; ")
	if !ok {
		return tocEntry{}, 0, 0, false
	}
	f := strings.Fields(rest)
	if len(f) < 3 {
		return tocEntry{}, 0, 0, false
	}
	cat, _ := strconv.Atoi(f[0])
	oid, _ := strconv.ParseUint(f[1], 10, 32)
	desc := f[2]
	for _, two := range []string{"FK CONSTRAINT", "CHECK CONSTRAINT", "INDEX ATTACH", "DEFAULT ACL", "EVENT TRIGGER", "ROW SECURITY", "MATERIALIZED VIEW DATA"} {
		if strings.HasPrefix(strings.Join(f[2:], " "), two) {
			desc = two
		}
	}
	e := tocEntry{line: line, desc: desc}
	// Schema and name follow desc; names are not quoted in the listing, so
	// keep only what the existence check needs: the schema (first field
	// after desc), the last-but-one field (the name) and the one before
	// (the table, for entries tagged "table name"). A name with spaces
	// simply fails the check and is applied as usual.
	if i := 2 + len(strings.Fields(desc)); i < len(f) {
		e.schema = f[i]
	}
	if len(f) >= 2 {
		e.name = f[len(f)-2]
	}
	if len(f) >= 3 {
		e.table = f[len(f)-3]
	}
	return e, cat, uint32(oid), true
}

// Tables returns the number of tables with early post-data work.
func (p *PostData) Tables() int { return len(p.byTable) }

// Steps returns one step per index or constraint of a copied table, each
// building it on the target (skipping it when an interrupted run already
// did), so a table's indexes are built in parallel.
func (p *PostData) Steps(t catalog.Table) []func(ctx context.Context, dst *pgx.Conn) error {
	var out []func(ctx context.Context, dst *pgx.Conn) error
	for _, e := range p.byTable[t.OID] {
		e := e
		out = append(out, func(ctx context.Context, dst *pgx.Conn) error {
			var exists bool
			err := dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('i', 'I'))`, t.Schema, e.name).Scan(&exists)
			if err != nil {
				return fmt.Errorf("check index %s of %s: %w", e.name, t, err)
			}
			if exists {
				return nil
			}
			return p.restore(ctx, fmt.Sprintf("%d-%s", t.OID, strings.SplitN(e.line, ";", 2)[0]), []string{e.line}, 1)
		})
	}
	return out
}

// Rest applies the remaining post-data entries with jobs parallel workers.
// It is resumable: entries whose object already exists on the target
// (dst, connected to the target database) — applied by an interrupted run
// — are skipped; the other kinds in Rest (comments, privileges, index
// attachments, materialized view refreshes) may be applied again.
func (p *PostData) Rest(ctx context.Context, dst *pgx.Conn, jobs int) error {
	// A statement that lost a deadlock anyway (SQLSTATE 40P01; e.g. index
	// attachments of one partitioned table) is retried: what succeeded is
	// skipped on the next attempt.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = p.rest1(ctx, dst, jobs); err == nil || !strings.Contains(err.Error(), "deadlock detected") {
			return err
		}
	}
	return err
}

// rest1 applies what is left of Rest in three waves: everything but
// foreign keys and comments in parallel; then the foreign keys, those that
// share a table (directly or through others) one after another in one
// transaction, so two of them can never lock the same pair of tables in
// opposite orders and deadlock, and independent groups in parallel; then
// the comments (some are on foreign keys).
func (p *PostData) rest1(ctx context.Context, dst *pgx.Conn, jobs int) error {
	have, err := existingObjects(ctx, dst)
	if err != nil {
		return err
	}
	var other, comments []string
	var fks []tocEntry
	for _, e := range p.rest {
		if k := e.key(); k != "" && have[k] {
			continue
		}
		switch {
		case e.desc == "FK CONSTRAINT":
			fks = append(fks, e)
		case e.desc == "COMMENT":
			comments = append(comments, e.line)
		default:
			other = append(other, e.line)
		}
	}
	if len(other) > 0 {
		if err := p.restore(ctx, "rest", other, jobs); err != nil {
			return err
		}
	}
	if err := p.foreignKeys(ctx, fks, jobs); err != nil {
		return err
	}
	if len(comments) > 0 {
		return p.restore(ctx, "comments", comments, 1)
	}
	return nil
}

// foreignKeys adds foreign keys grouped by connected tables (union-find):
// each group in one pg_restore transaction, at most jobs groups at once.
func (p *PostData) foreignKeys(ctx context.Context, fks []tocEntry, jobs int) error {
	parent := map[uint32]uint32{}
	var find func(x uint32) uint32
	find = func(x uint32) uint32 {
		if q, ok := parent[x]; ok && q != x {
			r := find(q)
			parent[x] = r
			return r
		}
		parent[x] = x
		return x
	}
	for _, e := range fks {
		a, b := find(e.fkTables[0]), find(e.fkTables[1])
		parent[a] = b
	}
	groups := map[uint32][]string{}
	var order []uint32
	for _, e := range fks {
		r := find(e.fkTables[0])
		if _, ok := groups[r]; !ok {
			order = append(order, r)
		}
		groups[r] = append(groups[r], e.line)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(jobs, 1))
	for i, r := range order {
		lines := groups[r]
		name := fmt.Sprintf("fk-%d", i)
		g.Go(func() error { return p.restore(gctx, name, lines, 1) })
	}
	return g.Wait()
}

// key names the object a post-data entry creates, as existingObjects does
// ("" for entries that can be applied twice).
func (e tocEntry) key() string {
	switch e.desc {
	case "FK CONSTRAINT", "CONSTRAINT", "CHECK CONSTRAINT":
		return "c:" + e.schema + ":" + e.table + ":" + e.name
	case "TRIGGER":
		return "t:" + e.schema + ":" + e.table + ":" + e.name
	case "RULE":
		return "r:" + e.schema + ":" + e.table + ":" + e.name
	case "POLICY":
		return "p:" + e.schema + ":" + e.table + ":" + e.name
	case "INDEX":
		return "i:" + e.schema + "::" + e.name
	case "STATISTICS":
		return "s:" + e.schema + "::" + e.name
	case "EVENT TRIGGER":
		return "e:::" + e.name
	}
	return ""
}

// existingObjects lists the target database's post-data objects in the
// form of tocEntry.key.
func existingObjects(ctx context.Context, dst *pgx.Conn) (map[string]bool, error) {
	rows, err := dst.Query(ctx, `
SELECT 'c:' || n.nspname || ':' || c.relname || ':' || co.conname FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 't:' || n.nspname || ':' || c.relname || ':' || tg.tgname FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT tg.tgisinternal
UNION ALL SELECT 'r:' || n.nspname || ':' || c.relname || ':' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'p:' || n.nspname || ':' || c.relname || ':' || po.polname FROM pg_policy po JOIN pg_class c ON c.oid = po.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL SELECT 'i:' || n.nspname || '::' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I')
UNION ALL SELECT 's:' || n.nspname || '::' || s.stxname FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
UNION ALL SELECT 'e:::' || evtname FROM pg_event_trigger`)
	if err != nil {
		return nil, fmt.Errorf("list post-data objects on the target: %w", err)
	}
	have := map[string]bool{}
	var k string
	if _, err := pgx.ForEachRow(rows, []any{&k}, func() error { have[k] = true; return nil }); err != nil {
		return nil, fmt.Errorf("list post-data objects on the target: %w", err)
	}
	return have, nil
}

func (p *PostData) restore(ctx context.Context, name string, lines []string, jobs int) error {
	listFile := filepath.Join(p.d.WorkDir, "list-"+name+".txt")
	if err := os.WriteFile(listFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write restore list: %w", err)
	}
	defer os.Remove(listFile)
	args := []string{"--exit-on-error", "--use-list=" + listFile}
	if jobs > 1 {
		args = append(args, fmt.Sprintf("--jobs=%d", jobs))
	} else {
		args = append(args, "--single-transaction")
	}
	args = append(args, p.archive)
	cmd := p.d.Tools.Command(ctx, "pg_restore", p.d.Target, args...)
	cmd.Env = append(cmd.Env, restoreOptions+" -c maintenance_work_mem=256MB -c synchronous_commit=off")
	if err := pgtools.Run(cmd, p.d.Source, p.d.Target); err != nil {
		return fmt.Errorf("schema (post-data %s) of %s: %w", name, p.d.Source.Database(), err)
	}
	return nil
}

// Close removes the archive.
func (p *PostData) Close() { os.Remove(p.archive) }
