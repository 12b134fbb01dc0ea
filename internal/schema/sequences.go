package schema

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Sequence is a sequence's state.
type Sequence struct {
	Schema, Name string
	LastValue    int64
	IsCalled     bool
}

// ReadSequences reads every sequence's state through q (inside the
// snapshot transaction, so values match the copied rows).
func ReadSequences(ctx context.Context, q pg.Querier) ([]Sequence, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sequence, error) {
		var s Sequence
		return s, r.Scan(&s.Schema, &s.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	for i := range seqs {
		s := &seqs[i]
		if err := q.QueryRow(ctx, "SELECT last_value, is_called FROM "+pg.Ident(s.Schema, s.Name)).Scan(&s.LastValue, &s.IsCalled); err != nil {
			return nil, fmt.Errorf("read sequence %s.%s: %w", s.Schema, s.Name, err)
		}
	}
	return seqs, nil
}

// SetSequences applies states to the sequences that exist on the target;
// it returns how many were set.
func SetSequences(ctx context.Context, dst pg.Querier, seqs []Sequence) (int, error) {
	rows, err := dst.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'`)
	if err != nil {
		return 0, fmt.Errorf("list target sequences: %w", err)
	}
	have := map[[2]string]bool{}
	var sn, n string
	if _, err := pgx.ForEachRow(rows, []any{&sn, &n}, func() error { have[[2]string{sn, n}] = true; return nil }); err != nil {
		return 0, fmt.Errorf("list target sequences: %w", err)
	}
	set := 0
	for _, s := range seqs {
		if !have[[2]string{s.Schema, s.Name}] {
			continue
		}
		if _, err := dst.Exec(ctx, "SELECT setval($1::regclass, $2, $3)", pg.Ident(s.Schema, s.Name), s.LastValue, s.IsCalled); err != nil {
			return set, fmt.Errorf("set sequence %s.%s: %w", s.Schema, s.Name, err)
		}
		set++
	}
	return set, nil
}
