package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/jobstoretest"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/sqlitestore"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

func newDriver(t *testing.T) jobstore.Driver {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), filepath.Join(t.TempDir(), sqlitedb.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return sqlitestore.New(db)
}

func TestConformance(t *testing.T) {
	jobstoretest.Run(t, newDriver)
}
