package logical

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// SequenceResult says what CopySequences did.
type SequenceResult struct {
	// Copied counts target sequences set to the source's value.
	Copied int
	// Kept lists sequences (schema.name) the target had already advanced
	// past the source's value; they are left alone, never moved back.
	Kept []string
	// Missing lists source sequences that do not exist on the target.
	Missing []string
}

type seqValue struct {
	schema, name string
	last, inc    int64
	called       bool
}

func (s seqValue) String() string { return s.schema + "." + s.name }

// CopySequences sets every sequence of the target database to the value
// of the same-named sequence of the source database (last_value and
// is_called, with setval), since logical replication does not carry
// sequence values. Run it once writes to the source have stopped and the
// subscriber has caught up (cutover does). A target sequence already
// further along than the source's is kept, so the target never hands out
// a value twice.
func CopySequences(ctx context.Context, src, dst pg.Querier) (SequenceResult, error) {
	var res SequenceResult
	srcSeqs, err := readSequences(ctx, src, nil)
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	if len(srcSeqs) == 0 {
		return res, nil
	}
	dstSeqs, err := readSequences(ctx, dst, srcSeqs)
	if err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	have := map[string]seqValue{}
	for _, s := range dstSeqs {
		have[s.String()] = s
	}
	batch := &pgx.Batch{}
	for _, s := range srcSeqs {
		t, ok := have[s.String()]
		switch {
		case !ok:
			res.Missing = append(res.Missing, s.String())
			continue
		case t.inc > 0 && t.last > s.last, t.inc < 0 && t.last < s.last, t.last == s.last && t.called && !s.called:
			res.Kept = append(res.Kept, s.String())
			continue
		}
		batch.Queue("SELECT setval($1::regclass, $2, $3)", pg.Ident(s.schema, s.name), s.last, s.called)
		res.Copied++
	}
	if batch.Len() == 0 {
		return res, nil
	}
	sender, ok := dst.(interface {
		SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
	})
	if !ok {
		for _, q := range batch.QueuedQueries {
			if _, err := dst.Exec(ctx, q.SQL, q.Arguments...); err != nil {
				return res, fmt.Errorf("target: setval %v: %w", q.Arguments[0], err)
			}
		}
		return res, nil
	}
	br := sender.SendBatch(ctx, batch)
	for _, q := range batch.QueuedQueries {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return res, fmt.Errorf("target: setval %v: %w", q.Arguments[0], err)
		}
	}
	if err := br.Close(); err != nil {
		return res, fmt.Errorf("target: setval: %w", err)
	}
	return res, nil
}

// readSequences returns the sequences of the database q is connected to
// with their values; only those named in only when only is non-nil.
func readSequences(ctx context.Context, q pg.Querier, only []seqValue) ([]seqValue, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname, s.seqincrement
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.relkind = 'S'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seqValue, error) {
		var s seqValue
		return s, r.Scan(&s.schema, &s.name, &s.inc)
	})
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	if only != nil {
		want := map[string]bool{}
		for _, s := range only {
			want[s.String()] = true
		}
		kept := all[:0]
		for _, s := range all {
			if want[s.String()] {
				kept = append(kept, s)
			}
		}
		all = kept
	}
	// Read values in batches of one UNION ALL query each.
	const chunk = 200
	for start := 0; start < len(all); start += chunk {
		end := min(start+chunk, len(all))
		parts := make([]string, 0, end-start)
		for i := start; i < end; i++ {
			parts = append(parts, fmt.Sprintf("SELECT %d, last_value, is_called FROM %s", i, pg.Ident(all[i].schema, all[i].name)))
		}
		rows, err := q.Query(ctx, strings.Join(parts, " UNION ALL "))
		if err != nil {
			return nil, fmt.Errorf("read sequence values: %w", err)
		}
		for rows.Next() {
			var i int
			var last int64
			var called bool
			if err := rows.Scan(&i, &last, &called); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read sequence values: %w", err)
			}
			all[i].last, all[i].called = last, called
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read sequence values: %w", err)
		}
	}
	return all, nil
}
