package logical

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// PublicationTables turns the selection rules for database db into the
// table list of its publication: nil (every table, including tables created
// later) when no table rule applies to db; otherwise every selected table
// that holds rows (not schema-only, not unlogged), with its predicate as
// the row filter. q is connected to the source database db.
func PublicationTables(ctx context.Context, q pg.Querier, db string, rules *selection.Rules) ([]TableSpec, error) {
	if !rules.HasTableRules(db) {
		return nil, nil
	}
	tables, err := catalog.ListTables(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("source database %s: %w", db, err)
	}
	out := []TableSpec{}
	for _, t := range tables {
		r := rules.Table(db, t.Schema, t.Name)
		if !r.Include || r.SchemaOnly || t.Unlogged {
			continue
		}
		out = append(out, TableSpec{Schema: t.Schema, Name: t.Name, RowFilter: r.Predicate})
	}
	return out, nil
}

// Databases lists the source databases the rules select, connecting to
// the database src names ("postgres" when it names none). Selecting none
// is an error.
func Databases(ctx context.Context, src pg.URL, rules *selection.Rules) ([]string, error) {
	conn, err := pg.Connect(ctx, AdminURL(src), "source")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	dbs, err := catalog.ListDatabases(ctx, conn, rules)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if len(dbs) == 0 {
		return nil, hint.Wrap(errors.New("no source database matches the selection"),
			"check --include-databases/--exclude-databases against the databases the source user can connect to")
	}
	names := make([]string, len(dbs))
	for i, d := range dbs {
		names[i] = d.Name
	}
	return names, nil
}

// AdminURL is u, or u with database "postgres" when u names none.
func AdminURL(u pg.URL) pg.URL {
	if u.Database() == "" {
		return u.WithDatabase("postgres")
	}
	return u
}

// ConnectIfExists connects to u like pg.Connect, but returns (nil, nil)
// when the database u names does not exist.
func ConnectIfExists(ctx context.Context, u pg.URL, role string) (*pgx.Conn, error) {
	cfg, err := pg.ConnConfig(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" {
		return nil, nil
	}
	if err != nil {
		return nil, pg.Explain(err, u, role)
	}
	return conn, nil
}
