package copier

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// CheckpointSchema is the schema, in each target database being copied,
// that records progress. Progress rows are written in the same transaction
// as the data they describe, so a crash can never leave a copied-but-
// unrecorded (or recorded-but-uncopied) table. The schema is dropped once
// the database is complete.
const CheckpointSchema = "_seren_replicator_checkpoint"

// EnsureCheckpoint creates the checkpoint schema (idempotent).
func EnsureCheckpoint(ctx context.Context, q pg.Querier) error {
	_, err := q.Exec(ctx, `
CREATE SCHEMA IF NOT EXISTS `+pg.Ident(CheckpointSchema)+`;
CREATE TABLE IF NOT EXISTS `+pg.Ident(CheckpointSchema, "state")+` (key text PRIMARY KEY, value text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS `+pg.Ident(CheckpointSchema, "done")+` (item text PRIMARY KEY, bytes bigint NOT NULL DEFAULT 0, at timestamptz NOT NULL DEFAULT now());`)
	if err != nil {
		return fmt.Errorf("create checkpoint schema %s: %w", CheckpointSchema, err)
	}
	return nil
}

// HasCheckpoint reports whether the target database has our checkpoint
// schema (i.e. an earlier run of ours created it and did not finish).
func HasCheckpoint(ctx context.Context, q pg.Querier) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", CheckpointSchema).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look for checkpoint: %w", err)
	}
	return ok, nil
}

// SetState records a key (e.g. "stage") in the checkpoint.
func SetState(ctx context.Context, q pg.Querier, key, value string) error {
	_, err := q.Exec(ctx, `INSERT INTO `+pg.Ident(CheckpointSchema, "state")+` (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, at = now()`, key, value)
	if err != nil {
		return fmt.Errorf("record checkpoint %s=%s: %w", key, value, err)
	}
	return nil
}

// State reads a key from the checkpoint ("" when absent).
func State(ctx context.Context, q pg.Querier, key string) (string, error) {
	var v string
	err := q.QueryRow(ctx, `SELECT value FROM `+pg.Ident(CheckpointSchema, "state")+` WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	return v, nil
}

// markDone records item as finished (call inside the data's transaction).
func markDone(ctx context.Context, q pg.Querier, item string, bytes int64) error {
	_, err := q.Exec(ctx, `INSERT INTO `+pg.Ident(CheckpointSchema, "done")+` (item, bytes) VALUES ($1, $2)
ON CONFLICT (item) DO UPDATE SET bytes = excluded.bytes, at = now()`, item, bytes)
	if err != nil {
		return fmt.Errorf("record checkpoint for %s: %w", item, err)
	}
	return nil
}

// clearItems forgets items with the given prefix (ranges of a table being
// copied again at a new snapshot).
func clearItems(ctx context.Context, q pg.Querier, prefix string) error {
	_, err := q.Exec(ctx, `DELETE FROM `+pg.Ident(CheckpointSchema, "done")+` WHERE item LIKE $1`, likePrefix(prefix)+"%")
	if err != nil {
		return fmt.Errorf("clear checkpoint for %s: %w", prefix, err)
	}
	return nil
}

// DoneItems returns every finished item with its byte count.
func DoneItems(ctx context.Context, q pg.Querier) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT item, bytes FROM `+pg.Ident(CheckpointSchema, "done"))
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			return map[string]int64{}, nil
		}
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	out := map[string]int64{}
	var item string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&item, &n}, func() error { out[item] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	return out, nil
}

// DropCheckpoint removes the checkpoint schema (database complete).
func DropCheckpoint(ctx context.Context, q pg.Querier) error {
	if _, err := q.Exec(ctx, "DROP SCHEMA IF EXISTS "+pg.Ident(CheckpointSchema)+" CASCADE"); err != nil {
		return fmt.Errorf("drop checkpoint schema: %w", err)
	}
	return nil
}

func likePrefix(s string) string {
	r := make([]rune, 0, len(s))
	for _, c := range s {
		if c == '%' || c == '_' || c == '\\' {
			r = append(r, '\\')
		}
		r = append(r, c)
	}
	return string(r)
}
