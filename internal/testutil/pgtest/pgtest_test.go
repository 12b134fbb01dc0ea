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

func TestPairVersionsRunsTheAskedMajors(t *testing.T) {
	src, dst := pgtest.PairVersions(t, 12, 18)
	for _, c := range []struct {
		cl   *pgtest.Cluster
		want int
	}{{src, 12}, {dst, 18}} {
		var v int
		if err := c.cl.Conn(t, "postgres").QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v/10000 != c.want || c.cl.Major != c.want {
			t.Fatalf("asked for PostgreSQL %d, got server_version_num %d (Major %d)", c.want, v, c.cl.Major)
		}
	}
	// The default cluster knows its major too.
	def, _ := pgtest.Pair(t)
	if def.Major < 12 {
		t.Fatalf("default cluster Major = %d", def.Major)
	}
}
