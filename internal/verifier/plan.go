package verifier

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// sessionSetup makes every value's text form the same on both sides,
// whatever the servers', databases' or roles' defaults. It runs as SET
// statements after connecting rather than as startup parameters, which
// some connection poolers refuse. Row filters run in these sessions:
// read-only, and under the standard string literal rules they were
// checked under (selection.SessionSetup).
const sessionSetup = `SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';
SET extra_float_digits = 1; SET bytea_output = 'hex'; SET lc_monetary = 'C'; SET default_transaction_read_only = on;
SET standard_conforming_strings = on`

// openPool connects to one database with the verify session settings.
func openPool(ctx context.Context, u pg.URL, role string, size int) (*pgxpool.Pool, error) {
	cfg, err := pg.PoolConfig(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	cfg.MaxConns = int32(max(size, 1))
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 15 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "postgres-seren-replicator verify"
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, sessionSetup); err != nil {
			return fmt.Errorf("set session parameters: %w", err)
		}
		return nil
	}
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, pg.Explain(err, u, role)
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		p.Close()
		return nil, pg.Explain(err, u, role)
	}
	c.Release()
	return p, nil
}

// column is one column of a table on one side.
type column struct {
	name    string
	typ     string // format_type, valid in a CAST
	typeOID uint32
	coll    string // qualified collation name; "" when not collatable
}

// keyCol is one primary key column with its type on each side.
type keyCol struct {
	name     string
	typ      [2]string // source, target
	coll     [2]string // source, target collation ("" when not collatable)
	typeOID  uint32    // source
	quotedNm string
}

const (
	srcSide = 0
	dstSide = 1
)

var sideNames = [2]string{"source", "target"}

// tableRun is one table being compared.
type tableRun struct {
	db   *dbRun
	src  catalog.Table
	rule selection.TableRule

	rel     string   // ONLY-able quoted name, same on both sides
	rowText string   // SQL for the row's text form
	key     []keyCol // nil: no primary key
	// byteOrder: the sides order the text key differently, so ranges
	// compare it in byte order (COLLATE "C"), which indexes cannot serve.
	byteOrder bool
	// columnsDiffer: a column exists on one side only.
	columnsDiffer bool
	chunks        []*chunk

	start   time.Time
	pending atomic.Int64
	budget  atomic.Int64 // key ranges still worth narrowing
	notes   []string
	result  TableResult
	done    bool
}

func (t *tableRun) base() TableResult {
	r := TableResult{Database: t.db.name, Schema: t.src.Schema, Table: t.src.Name, Predicate: t.rule.Predicate}
	if t.rule.SchemaOnly {
		r.Method = MethodSchemaOnly
	}
	return r
}

// fail finishes the table with an error.
func (t *tableRun) fail(err error) {
	r := t.base()
	r.Status = StatusError
	r.Error = err.Error()
	r.Notes = t.notes
	r.DurationMS = t.db.opts.Now().Sub(t.start).Milliseconds()
	t.result, t.done, t.chunks = r, true, nil
}

// plan reads both sides' columns and the primary key, and splits the key
// space into chunks.
func (t *tableRun) plan(ctx context.Context) error {
	t.rel = t.src.QualifiedName()
	if t.rule.SchemaOnly {
		r := t.base()
		r.Status = StatusOK
		r.Notes = []string{"schema-only table: rows are not compared"}
		t.result, t.done = r, true
		return nil
	}
	var cols [2][]column
	for side, p := range []*pgxpool.Pool{t.db.src, t.db.dst} {
		c, err := readColumns(ctx, p, t.rel)
		if err != nil {
			return fmt.Errorf("%s: read columns of %s: %w", sideNames[side], t.src, err)
		}
		cols[side] = c
	}
	// Rows are compared on the columns both sides have, in source order,
	// generated columns included; any column on one side only is itself a
	// difference.
	onTarget := make(map[string]column, len(cols[dstSide]))
	for _, c := range cols[dstSide] {
		onTarget[c.name] = c
	}
	onSource := make(map[string]bool, len(cols[srcSide]))
	var common []string
	var onlySrc, onlyDst []string
	for _, c := range cols[srcSide] {
		onSource[c.name] = true
		if _, ok := onTarget[c.name]; ok {
			common = append(common, pg.Ident(c.name))
		} else {
			onlySrc = append(onlySrc, c.name)
		}
	}
	for _, c := range cols[dstSide] {
		if !onSource[c.name] {
			onlyDst = append(onlyDst, c.name)
		}
	}
	t.columnsDiffer = len(onlySrc)+len(onlyDst) > 0
	if len(onlySrc) > 0 {
		t.notes = append(t.notes, "columns missing on the target: "+strings.Join(onlySrc, ", "))
	}
	if len(onlyDst) > 0 {
		t.notes = append(t.notes, "columns only on the target: "+strings.Join(onlyDst, ", "))
	}
	t.rowText = "ROW(" + strings.Join(common, ", ") + ")::text"

	srcCols := make(map[string]column, len(cols[srcSide]))
	for _, c := range cols[srcSide] {
		srcCols[c.name] = c
	}
	for _, k := range t.src.PrimaryKey {
		dc, ok := onTarget[k]
		if !ok {
			t.key = nil
			t.notes = append(t.notes, "primary key column "+k+" missing on the target: compared as a whole table")
			break
		}
		sc := srcCols[k]
		t.key = append(t.key, keyCol{name: k, typ: [2]string{sc.typ, dc.typ}, coll: [2]string{sc.coll, dc.coll}, typeOID: sc.typeOID, quotedNm: pg.Ident(k)})
	}
	t.budget.Store(int64(t.db.opts.MaxRanges))
	same, err := t.sameKeyOrder(ctx)
	if err != nil {
		return err
	}
	if !same {
		t.byteOrder = true
		t.notes = append(t.notes, "the source and target sort the text key differently (collation); compared in byte order as one range, which is slower")
	}

	bounds, err := t.boundaries(ctx)
	if err != nil {
		return fmt.Errorf("source: split %s into key ranges: %w", t.src, err)
	}
	var lo []string
	for i := 0; i <= len(bounds); i++ {
		var hi []string
		if i < len(bounds) {
			hi = bounds[i]
		}
		t.chunks = append(t.chunks, &chunk{t: t, idx: i, lo: lo, hi: hi})
		lo = hi
	}
	return nil
}

func readColumns(ctx context.Context, q pg.Querier, rel string) ([]column, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid,
       coalesce((SELECT quote_ident(n.nspname) || '.' || quote_ident(c.collname)
                 FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = a.attcollation), '')
FROM pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, rel)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.name, &c.typ, &c.typeOID, &c.coll)
		return c, err
	})
}

// Integer type OIDs (int2, int4, int8): split by arithmetic on min/max.
func isIntegerType(oid uint32) bool { return oid == 20 || oid == 21 || oid == 23 }

// boundaries returns the lower bounds of chunks 2..n (each a key tuple in
// text form), read on the source. None: a single chunk.
func (t *tableRun) boundaries(ctx context.Context) ([][]string, error) {
	if t.key == nil || t.byteOrder {
		return nil, nil
	}
	chunkRows := t.db.opts.ChunkRows
	est := t.src.EstRows
	if est <= 0 {
		// Never analyzed: count (one scan, exact).
		n, err := countRows(ctx, t.db.src, t.src, "")
		if err != nil {
			return nil, err
		}
		est = n
	}
	n := (est + chunkRows - 1) / chunkRows
	if n <= 1 {
		return nil, nil
	}
	if len(t.key) == 1 && isIntegerType(t.key[0].typeOID) {
		return t.integerBoundaries(ctx, n)
	}
	return t.sampledBoundaries(ctx, n, est)
}

// integerBoundaries splits [min, max] of a single integer key into n
// equal-width ranges.
func (t *tableRun) integerBoundaries(ctx context.Context, n int64) ([][]string, error) {
	k := t.key[0].quotedNm
	var lo, hi *int64
	if err := t.db.src.QueryRow(ctx, "SELECT min("+k+")::int8, max("+k+")::int8 FROM ONLY "+t.rel).Scan(&lo, &hi); err != nil {
		return nil, err
	}
	if lo == nil || hi == nil || *lo == *hi {
		return nil, nil
	}
	span := uint64(*hi) - uint64(*lo) // no overflow: hi > lo
	if uint64(n) > span {
		n = int64(span)
	}
	// Chunk i starts at lo + i*(span/n) + min(i, span%n): equal widths,
	// no overflow.
	q, rem := span/uint64(n), span%uint64(n)
	var out [][]string
	for i := uint64(1); i < uint64(n); i++ {
		b := uint64(*lo) + i*q + min(i, rem)
		out = append(out, []string{strconv.FormatInt(int64(b), 10)})
	}
	return out, nil
}

// sampledBoundaries takes quantiles of a TABLESAMPLE of the key (ntile over
// the sample, server side): about 20 sampled keys per chunk. Falls back to
// ntile over the whole key when the sample comes back too small.
func (t *tableRun) sampledBoundaries(ctx context.Context, n, est int64) ([][]string, error) {
	want := float64(max(n*20, 1000))
	pct := math.Min(100, math.Max(0.0001, 100*want/float64(est)))
	sample := fmt.Sprintf(" TABLESAMPLE SYSTEM (%s) REPEATABLE (7)", strconv.FormatFloat(pct, 'f', -1, 64))
	for _, from := range []string{sample, ""} {
		q := t.bucketStarts(n, from+t.where(t.rule.Predicate))
		out, err := t.queryKeys(ctx, t.db.src, q)
		if err != nil {
			return nil, err
		}
		if int64(len(out)) >= n/2 || from == "" {
			if len(out) > 0 {
				out = out[1:] // the first chunk starts at the beginning of the table
			}
			return out, nil
		}
	}
	return nil, nil
}

// queryKeys runs q (returning key columns as text) and collects the rows.
func (t *tableRun) queryKeys(ctx context.Context, q pg.Querier, sql string, args ...any) ([][]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]string, error) {
		vals := make([]string, len(t.key))
		ptrs := make([]any, len(t.key))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		err := r.Scan(ptrs...)
		return vals, err
	})
}

func (t *tableRun) keyList() string {
	parts := make([]string, len(t.key))
	for i, k := range t.key {
		parts[i] = k.quotedNm
	}
	return strings.Join(parts, ", ")
}

// keyOrder is the key columns as sorted and compared: in byte order for
// text keys when the sides' collations disagree.
func (t *tableRun) keyOrder() string {
	parts := make([]string, len(t.key))
	for i, k := range t.key {
		parts[i] = k.quotedNm
		if t.byteOrder && k.coll[srcSide] != "" {
			parts[i] += ` COLLATE "C"`
		}
	}
	return strings.Join(parts, ", ")
}

// bucketStarts is SQL returning the first key (as text) of each of n
// equal buckets of the rows FROM ONLY rel<tail>, in key order.
func (t *tableRun) bucketStarts(n int64, tail string) string {
	return "SELECT DISTINCT ON (seren_verify_bucket) " + t.keyTextList() + " FROM (SELECT " + t.keyList() +
		", ntile(" + strconv.FormatInt(n, 10) + ") OVER (ORDER BY " + t.keyOrder() + ") AS seren_verify_bucket FROM ONLY " +
		t.rel + tail + ") s ORDER BY seren_verify_bucket, " + t.keyOrder()
}

// probeStrings tell collations apart: case, accents, punctuation and
// spaces sort differently in C, glibc and ICU locales (and across glibc
// versions).
var probeStrings = []string{"a", "A", "b", "B", "z", "Z", "ä", "é", "e", "_", "-", " ", "~", "1", "11", "1-1", "1 1",
	"a b", "ab", "a-b", "a_b", "aa", "AA", "a-a", "a a", "Ab", "aB", "ß", "ss", "æ", "ae", "0", "9"}

// sameKeyOrder reports whether both sides sort the key's text columns the
// same way, probing each column's collation with probeStrings. When they
// differ, a key range would select different rows on each side.
func (t *tableRun) sameKeyOrder(ctx context.Context) (bool, error) {
	for _, k := range t.key {
		if k.coll[srcSide] == "" || k.coll[dstSide] == "" {
			continue
		}
		var order [2][]string
		for side, p := range []*pgxpool.Pool{t.db.src, t.db.dst} {
			q := "SELECT array_agg(s ORDER BY s COLLATE " + k.coll[side] + `, s COLLATE "C") FROM unnest($1::text[]) s`
			if err := p.QueryRow(ctx, q, probeStrings).Scan(&order[side]); err != nil {
				return false, fmt.Errorf("%s: probe collation %s of %s.%s: %w", sideNames[side], k.coll[side], t.src, k.name, err)
			}
		}
		if strings.Join(order[srcSide], "\x00") != strings.Join(order[dstSide], "\x00") {
			return false, nil
		}
	}
	return true, nil
}

func (t *tableRun) keyTextList() string {
	parts := make([]string, len(t.key))
	for i, k := range t.key {
		parts[i] = k.quotedNm + "::text"
	}
	return strings.Join(parts, ", ")
}

// where is " WHERE (pred)" or "".
func (t *tableRun) where(pred string) string {
	if pred == "" {
		return ""
	}
	return " WHERE (" + pred + ")"
}

// rangeCond returns the SQL condition for lo <= key < hi on side (with
// the table's predicate), appending parameters to args.
func (t *tableRun) rangeCond(side int, lo, hi []string, args *[]any) string {
	var conds []string
	if t.rule.Predicate != "" {
		conds = append(conds, "("+t.rule.Predicate+")")
	}
	keyExpr := t.keyOrder()
	if len(t.key) > 1 {
		keyExpr = "(" + keyExpr + ")"
	}
	tuple := func(vals []string) string {
		parts := make([]string, len(vals))
		for i, v := range vals {
			*args = append(*args, v)
			parts[i] = fmt.Sprintf("CAST($%d::text AS %s)", len(*args), t.key[i].typ[side])
		}
		if len(parts) == 1 {
			return parts[0]
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	if lo != nil {
		conds = append(conds, keyExpr+" >= "+tuple(lo))
	}
	if hi != nil {
		conds = append(conds, keyExpr+" < "+tuple(hi))
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// countRows counts the rows of a source table matching pred.
func countRows(ctx context.Context, p *pgxpool.Pool, t catalog.Table, pred string) (int64, error) {
	tx, err := p.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := "SELECT count(*) FROM ONLY " + t.QualifiedName()
	if pred != "" {
		q += " WHERE (" + pred + ")"
	}
	var n int64
	if err := tx.QueryRow(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", t, err)
	}
	return n, nil
}

// anyDiffers reports whether a chunk of the table differs.
func (t *tableRun) anyDiffers() bool {
	for _, c := range t.chunks {
		if c.differs {
			return true
		}
	}
	return false
}

// rechecks is the number of re-check rounds the table went through.
func (t *tableRun) rechecks() int {
	n := 0
	for _, c := range t.chunks {
		n = max(n, c.rechecked)
	}
	return n
}

// finish assembles the table's result from its chunks.
func (t *tableRun) finish() {
	r := t.base()
	r.Method = MethodWholeTable
	for _, k := range t.key {
		r.KeyColumns = append(r.KeyColumns, k.name)
	}
	if t.key != nil {
		r.Method = MethodChunked
	}
	r.Chunks = len(t.chunks)
	r.Status = StatusOK
	r.Notes = append(r.Notes, t.notes...)
	if t.columnsDiffer {
		r.Status = StatusDifferent
	}
	var ranges []KeyRange
	settled, persisting := 0, 0
	for _, c := range t.chunks {
		r.SourceRows += c.agg[srcSide].count
		r.TargetRows += c.agg[dstSide].count
		if c.err != nil {
			r.Status = StatusError
			if r.Error == "" {
				r.Error = c.err.Error()
			}
			continue
		}
		if c.differs {
			if r.Status == StatusOK {
				r.Status = StatusDifferent
			}
			ranges = append(ranges, c.ranges...)
			if c.rechecked > 0 {
				persisting++
			}
		} else if c.rechecked > 0 {
			settled++
		}
	}
	if t.key == nil && r.Status == StatusDifferent && !t.columnsDiffer {
		r.Notes = append(r.Notes, "no primary key: compared as a whole (count and hash); key ranges cannot be named")
	}
	if settled > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d key range(s) differed at first and matched after the subscriber caught up (writes in flight)", settled))
	}
	if persisting > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("differences persisted through %d re-check(s) after the subscriber caught up; if writes continue on these rows, re-run verify after they stop", t.rechecks()))
	}
	if max := t.db.opts.MaxRanges; len(ranges) > max {
		r.RangesOmitted = len(ranges) - max
		ranges = ranges[:max]
	}
	r.Ranges = ranges
	r.DurationMS = t.db.opts.Now().Sub(t.start).Milliseconds()
	t.result, t.done = r, true
}
