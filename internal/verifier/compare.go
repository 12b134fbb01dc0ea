package verifier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Narrowing: a differing range is split into fanout parts, recursively,
// until it holds at most leafRows rows, which are then compared row by
// row. maxDepth bounds the recursion whatever the data.
const (
	fanout   = 8
	leafRows = 64
	maxDepth = 12
)

// agg is a range's row count and sum of 64-bit row hashes (numeric text).
type agg struct {
	count int64
	sum   string
}

// chunk is one key range of a table (the whole table when it has no key).
type chunk struct {
	t      *tableRun
	idx    int
	lo, hi []string // nil: open end

	agg       [2]agg
	differs   bool
	ranges    []KeyRange // narrowed differing ranges
	rechecked int
	err       error
}

// both runs f for the source and the target concurrently.
func both[T any](ctx context.Context, f func(ctx context.Context, side int) (T, error)) ([2]T, error) {
	var out [2]T
	var errs [2]error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		out[dstSide], errs[dstSide] = f(ctx, dstSide)
	}()
	out[srcSide], errs[srcSide] = f(ctx, srcSide)
	wg.Wait()
	return out, errors.Join(errs[srcSide], errs[dstSide])
}

// compare hashes the chunk on both sides, each in a REPEATABLE READ READ
// ONLY transaction, and narrows it down when it differs (in the same
// snapshots).
func (c *chunk) compare(ctx context.Context) error {
	t := c.t
	pools := [2]interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	}{t.db.src, t.db.dst}
	txs, err := both(ctx, func(ctx context.Context, side int) (pgx.Tx, error) {
		tx, err := pools[side].BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("%s: begin transaction: %w", sideNames[side], err)
		}
		return tx, nil
	})
	defer func() {
		for _, tx := range txs {
			if tx != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
			}
		}
	}()
	if err != nil {
		return err
	}
	aggs, err := both(ctx, func(ctx context.Context, side int) (agg, error) {
		return t.hash(ctx, txs[side], side, c.lo, c.hi)
	})
	if err != nil {
		return err
	}
	c.agg = aggs
	c.differs = aggs[srcSide] != aggs[dstSide]
	c.ranges = nil
	if c.differs && t.key != nil {
		if c.ranges, err = t.narrow(ctx, txs, c.lo, c.hi, aggs, 0); err != nil {
			return err
		}
	}
	return nil
}

// hash returns the count and hash sum of the rows in [lo, hi) on side.
func (t *tableRun) hash(ctx context.Context, q pgx.Tx, side int, lo, hi []string) (agg, error) {
	var args []any
	sql := "SELECT count(*), coalesce(sum(('x' || substr(md5(" + t.rowText + "), 1, 16))::bit(64)::bigint), 0)::text FROM ONLY " +
		t.rel + t.rangeCond(side, lo, hi, &args)
	var a agg
	if err := q.QueryRow(ctx, sql, args...).Scan(&a.count, &a.sum); err != nil {
		return a, fmt.Errorf("%s: hash %s%s: %w", sideNames[side], t.src, t.rangeLabel(lo, hi), err)
	}
	return a, nil
}

// narrow splits a differing range [lo, hi) until its parts are small,
// then names the differing rows. The key-range budget of the table bounds
// the work when much of it differs: past it, ranges are reported as found.
func (t *tableRun) narrow(ctx context.Context, txs [2]pgx.Tx, lo, hi []string, aggs [2]agg, depth int) ([]KeyRange, error) {
	kr := KeyRange{From: lo, To: hi, SourceRows: aggs[srcSide].count, TargetRows: aggs[dstSide].count}
	if max(kr.SourceRows, kr.TargetRows) <= leafRows {
		if t.budget.Add(-1) < 0 {
			return []KeyRange{kr}, nil
		}
		rows, err := t.rowDiff(ctx, txs, lo, hi)
		if err != nil {
			return nil, err
		}
		kr.Rows = rows
		return []KeyRange{kr}, nil
	}
	if depth >= maxDepth || t.budget.Load() <= 0 {
		t.budget.Add(-1)
		return []KeyRange{kr}, nil
	}
	// Split on the side holding more rows of the range.
	side := srcSide
	if kr.TargetRows > kr.SourceRows {
		side = dstSide
	}
	var args []any
	q := t.bucketStarts(fanout, t.rangeCond(side, lo, hi, &args))
	firsts, err := t.queryKeys(ctx, txs[side], q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: split %s%s: %w", sideNames[side], t.src, t.rangeLabel(lo, hi), err)
	}
	if len(firsts) < 2 {
		t.budget.Add(-1)
		return []KeyRange{kr}, nil
	}
	bounds := firsts[1:]
	var out []KeyRange
	subLo := lo
	for i := 0; i <= len(bounds); i++ {
		subHi := hi
		if i < len(bounds) {
			subHi = bounds[i]
		}
		sub, err := both(ctx, func(ctx context.Context, side int) (agg, error) {
			return t.hash(ctx, txs[side], side, subLo, subHi)
		})
		if err != nil {
			return nil, err
		}
		if sub[srcSide] != sub[dstSide] {
			r, err := t.narrow(ctx, txs, subLo, subHi, sub, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, r...)
		}
		subLo = subHi
	}
	if len(out) == 0 {
		// The parts add up to the whole within one snapshot, so one of
		// them differs; keep the whole range if that ever fails.
		out = []KeyRange{kr}
	}
	return out, nil
}

// rowDiff compares the rows of a small range one by one.
func (t *tableRun) rowDiff(ctx context.Context, txs [2]pgx.Tx, lo, hi []string) ([]RowDiff, error) {
	type row struct {
		key  []string
		hash string
	}
	rows, err := both(ctx, func(ctx context.Context, side int) ([]row, error) {
		var args []any
		q := "SELECT ARRAY[" + t.keyTextList() + "], md5(" + t.rowText + ") FROM ONLY " + t.rel +
			t.rangeCond(side, lo, hi, &args) + " ORDER BY " + t.keyOrder()
		rs, err := txs[side].Query(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("%s: read rows of %s%s: %w", sideNames[side], t.src, t.rangeLabel(lo, hi), err)
		}
		out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.key, &x.hash)
			return x, err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: read rows of %s%s: %w", sideNames[side], t.src, t.rangeLabel(lo, hi), err)
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	keyOf := func(k []string) string { return strings.Join(k, "\x00") }
	srcHash := make(map[string]string, len(rows[srcSide]))
	for _, r := range rows[srcSide] {
		srcHash[keyOf(r.key)] = r.hash
	}
	var diffs []RowDiff
	seen := make(map[string]bool, len(rows[dstSide]))
	var extra []RowDiff
	for _, r := range rows[dstSide] {
		k := keyOf(r.key)
		h, ok := srcHash[k]
		switch {
		case seen[k] || !ok: // a key only on the target, or a duplicate of one
			extra = append(extra, RowDiff{Key: r.key, Kind: RowExtra})
		case h != r.hash:
			seen[k] = true
		default:
			seen[k] = true
			delete(srcHash, k) // identical
		}
	}
	for _, r := range rows[srcSide] {
		k := keyOf(r.key)
		if _, differs := srcHash[k]; !differs {
			continue
		}
		if seen[k] {
			diffs = append(diffs, RowDiff{Key: r.key, Kind: RowChanged})
		} else {
			diffs = append(diffs, RowDiff{Key: r.key, Kind: RowMissing})
		}
	}
	return append(diffs, extra...), nil
}

// rangeLabel describes [lo, hi) for error messages.
func (t *tableRun) rangeLabel(lo, hi []string) string {
	if t.key == nil || (lo == nil && hi == nil) {
		return ""
	}
	return " range " + FormatRange(t.keyNames(), KeyRange{From: lo, To: hi})
}

func (t *tableRun) keyNames() []string {
	out := make([]string, len(t.key))
	for i, k := range t.key {
		out[i] = k.name
	}
	return out
}

// FormatRange renders a key range for people, e.g. "id >= 100 AND id < 200"
// or "(a, b) >= (1, x)"; "all rows" when both ends are open.
func FormatRange(keyColumns []string, r KeyRange) string {
	name := strings.Join(keyColumns, ", ")
	tuple := func(v []string) string { return strings.Join(v, ", ") }
	if len(keyColumns) > 1 {
		name = "(" + name + ")"
		tuple = func(v []string) string { return "(" + strings.Join(v, ", ") + ")" }
	}
	var parts []string
	if r.From != nil {
		parts = append(parts, name+" >= "+tuple(r.From))
	}
	if r.To != nil {
		parts = append(parts, name+" < "+tuple(r.To))
	}
	if len(parts) == 0 {
		return "all rows"
	}
	return strings.Join(parts, " AND ")
}

// FormatKey renders one key, e.g. "id=5" or "(a, b)=(1, x)".
func FormatKey(keyColumns []string, key []string) string {
	if len(keyColumns) == 1 && len(key) == 1 {
		return keyColumns[0] + "=" + key[0]
	}
	return "(" + strings.Join(keyColumns, ", ") + ")=(" + strings.Join(key, ", ") + ")"
}
