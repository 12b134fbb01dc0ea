package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestPairIsLogicalAndFresh(t *testing.T) {
	src, dst := pgtest.Pair(t)
	name, _ := src.NewDB(t)
	conn := src.Conn(t, name)
	var level string
	if err := conn.QueryRow(context.Background(), "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %q, want logical", level)
	}
	if src.Port == dst.Port {
		t.Fatal("source and target share a port")
	}
}
