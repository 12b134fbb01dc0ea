package logical

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// CutoverResult says what Cutover did for one database.
type CutoverResult struct {
	Database string `json:"database"`
	// NothingToDo: none of our replication objects existed.
	NothingToDo bool           `json:"nothing_to_do,omitempty"`
	Sequences   SequenceResult `json:"sequences"`
	// How long each step took.
	CatchUp  time.Duration `json:"-"`
	CopySeqs time.Duration `json:"-"`
	Teardown time.Duration `json:"-"`
}

// Cutover finishes sync for database db: it waits (at most timeout) until
// the subscriber has applied everything committed on the source so far,
// copies sequence values to the target, then drops the subscription, the
// slot and the publication, so the source retains no WAL for us. src and
// dst are connected to the database on each side. Writes to the source
// must have stopped before the call (see BlockWrites); anything written
// after the wait is not carried over. now measures the steps.
func Cutover(ctx context.Context, src, dst pg.Querier, db string, timeout time.Duration, now func() time.Time) (*CutoverResult, error) {
	res := &CutoverResult{Database: db}
	tid, err := TargetID(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	n, err := NamesFor(ctx, tid, dst, db)
	if err != nil {
		return nil, err
	}
	slot, err := GetSlot(ctx, src, n.Slot)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	sub, err := GetSubscription(ctx, dst, n.Subscription)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	pub, err := PublicationExists(ctx, src, n.Publication)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if slot == nil && sub == nil && !pub {
		res.NothingToDo = true
		return res, nil
	}
	if slot == nil || sub == nil {
		// Half a set-up cannot deliver the last changes; say so rather
		// than copy sequences over a target that may be missing rows.
		return nil, hint.Wrap(fmt.Errorf("database %s: sync is not running (slot present: %v, subscription present: %v), so the target cannot be brought up to date: %w", db, slot != nil, sub != nil, ErrNeedsCopy),
			"see `status`; to drop what is left anyway: cutover --skip-wait")
	}
	t0 := now()
	if err := WaitCaughtUp(ctx, src, dst, n, timeout); err != nil {
		return nil, fmt.Errorf("database %s: %w", db, err)
	}
	t1 := now()
	res.CatchUp = t1.Sub(t0)
	if res.Sequences, err = CopySequences(ctx, src, dst); err != nil {
		return nil, fmt.Errorf("database %s: copy sequences: %w", db, err)
	}
	t2 := now()
	res.CopySeqs = t2.Sub(t1)
	if err := Teardown(ctx, src, dst, n); err != nil {
		return nil, fmt.Errorf("database %s: %w", db, err)
	}
	res.Teardown = now().Sub(t2)
	return res, nil
}

// ForceTeardown is cutover without the wait: it copies sequence values and
// drops whatever exists of the pair's set n (see ResolveNames), for a
// set-up that can no longer catch up. Other targets' sets are not touched.
func ForceTeardown(ctx context.Context, src, dst pg.Querier, db string, n ObjectNames) (*CutoverResult, error) {
	res := &CutoverResult{Database: db}
	var err error
	if !isNil(dst) {
		if res.Sequences, err = CopySequences(ctx, src, dst); err != nil {
			return nil, fmt.Errorf("database %s: copy sequences: %w", db, err)
		}
	}
	if err := Teardown(ctx, src, dst, n); err != nil {
		return nil, fmt.Errorf("database %s: %w", db, err)
	}
	return res, nil
}

// BlockWrites makes database db on the source read-only for new sessions
// (ALTER DATABASE … SET default_transaction_read_only = on) and terminates
// its other client sessions, so applications reconnect read-only. WAL
// senders and the caller's own session are left alone. admin is connected
// to the source (any database); it returns how many sessions it ended.
// Superusers can still override the setting per session; UnblockWrites
// undoes it.
func BlockWrites(ctx context.Context, admin pg.Querier, db string) (int, error) {
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pg.Ident(db)+" SET default_transaction_read_only = on"); err != nil {
		return 0, explainBlock(err, db)
	}
	var ended int
	err := admin.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`, db).Scan(&ended)
	if err != nil {
		return 0, explainBlock(err, db)
	}
	return ended, nil
}

// UnblockWrites undoes BlockWrites.
func UnblockWrites(ctx context.Context, admin pg.Querier, db string) error {
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pg.Ident(db)+" RESET default_transaction_read_only"); err != nil {
		return fmt.Errorf("source database %s: allow writes again: %w", db, err)
	}
	return nil
}

func explainBlock(err error, db string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return hint.Wrap(fmt.Errorf("source database %s: block writes: %s", db, pgErr.Message),
			"--block-writes needs the database owner or a superuser (and pg_signal_backend to end sessions); or stop the application's writes yourself and omit --block-writes")
	}
	return fmt.Errorf("source database %s: block writes: %w", db, err)
}
