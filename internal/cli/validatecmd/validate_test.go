package validatecmd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func runValidate(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	cmd := New(ios)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	var ec interface{ ExitCode() int }
	switch {
	case errors.As(err, &ec):
		code = ec.ExitCode()
	case err != nil:
		t.Logf("error: %v", err)
		code = 1
	}
	return out.String(), errOut.String(), code
}

// A deliberately misconfigured pair: wal_level replica, no free slot, a
// key-less table. Each problem is listed with its fix; exit status 3.
func TestMisconfiguredPairExitsNonZero(t *testing.T) {
	_, dst := pgtest.Pair(t)
	bad := pgtest.New(t, pgtest.Options{Settings: []string{"wal_level = replica", "max_replication_slots = 1"}})
	db, _ := bad.NewDB(t)
	bad.Exec(t, db, "CREATE TABLE keyless (v text); CREATE TABLE keyed (id int PRIMARY KEY)")
	bad.Exec(t, "postgres", "SELECT pg_create_physical_replication_slot('occupied')")
	args := []string{"--source", bad.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db}

	out, _, code := runValidate(t, args...)
	if code != clio.ExitProblems {
		t.Fatalf("exit %d, want %d\n%s", code, clio.ExitProblems, out)
	}
	for _, want := range []string{
		"BLOCKER  source, wal_level",
		"fix: ALTER SYSTEM SET wal_level = logical; then restart the source server",
		"BLOCKER  source, max_replication_slots",
		"fix: ALTER SYSTEM SET max_replication_slots = 2;",
		"SELECT pg_drop_replication_slot('occupied');",
		"WARNING  source database " + db + ", table public.keyless",
		`fix: ALTER TABLE "public"."keyless" REPLICA IDENTITY FULL;`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "public.keyed") {
		t.Errorf("the keyed table is fine:\n%s", out)
	}
	if strings.Contains(out, bad.Password) {
		t.Error("password printed")
	}

	out, _, code = runValidate(t, append(args, "-o", "json")...)
	var ps []logical.Problem
	if err := json.Unmarshal([]byte(out), &ps); err != nil || code != clio.ExitProblems || len(ps) < 3 {
		t.Fatalf("json: exit %d, %v\n%s", code, err, out)
	}
}

func TestHealthyPairExitsZero(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t)
	src.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE log (line text)")
	out, errOut, code := runValidate(t, "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	// The key-less table is a warning, not a blocker.
	if !strings.Contains(out, "WARNING") || !strings.Contains(errOut, "nothing blocks") {
		t.Errorf("output:\n%s%s", out, errOut)
	}
}
