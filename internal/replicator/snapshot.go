package replicator

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// snapshot is an exported source snapshot, alive while its transaction is
// open. conn can read at the snapshot (it is the exporting transaction).
type snapshot struct {
	name string
	conn *pgx.Conn
	once sync.Once
	// onRelease ends whatever holds the snapshot (a slot's connection).
	onRelease func()
}

// exportSnapshot opens a REPEATABLE READ transaction on the source database
// and exports its snapshot for the copy's other transactions to import.
func exportSnapshot(ctx context.Context, u pg.URL) (*snapshot, error) {
	conn, err := pg.Connect(ctx, u, "source")
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("source: begin snapshot transaction: %w", err)
	}
	var name string
	if err := conn.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&name); err != nil {
		conn.Close(ctx)
		return nil, pg.Explain(fmt.Errorf("export snapshot: %w", err), u, "source")
	}
	return &snapshot{name: name, conn: conn}, nil
}

// importSnapshot opens a connection reading at an exported snapshot held
// elsewhere (a replication slot's); release also runs onRelease.
func importSnapshot(ctx context.Context, u pg.URL, name string, onRelease func()) (*snapshot, error) {
	conn, err := pg.Connect(ctx, u, "source")
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("source: begin snapshot transaction: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT "+pg.Literal(name)); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("source: import snapshot %s: %w", name, err)
	}
	return &snapshot{name: name, conn: conn, onRelease: onRelease}, nil
}

// release ends the snapshot transaction (idempotent).
func (s *snapshot) release() {
	s.once.Do(func() {
		ctx := context.Background()
		_, _ = s.conn.Exec(ctx, "ROLLBACK")
		s.conn.Close(ctx)
		if s.onRelease != nil {
			s.onRelease()
		}
	})
}
