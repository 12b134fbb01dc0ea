package replicator_test

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func pgConn(ctx context.Context, c *pgtest.Cluster, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, c.URL(db).Secret())
}
