package verifycmd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// pair creates database db with the same tables and rows on both clusters.
func pair(t *testing.T) (db string, src, dst *pgtest.Cluster) {
	t.Helper()
	src, dst = pgtest.Pair(t)
	db, _ = src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	sql := `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, 5000) i;
CREATE TABLE tags (name text, n int); INSERT INTO tags VALUES ('a', 1), ('a', 1), ('b', NULL); ANALYZE;`
	src.Exec(t, db, sql)
	dst.Exec(t, db, sql)
	return db, src, dst
}

// runVerify runs the command's flags through cobra, like a user would.
func runVerify(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	cmd := New(ios)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true // as under the real root
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

func TestIdenticalExitsZero(t *testing.T) {
	db, src, dst := pair(t)
	out, errOut, err := runVerify(t, "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(),
		"--include-databases", db, "--chunk-rows", "1000", "-j", "2")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, errOut)
	}
	for _, want := range []string{"DATABASE", "public.items", "5,000", "Identical: 2 table(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "public.items: ok") {
		t.Errorf("stderr lacks progress lines:\n%s", errOut)
	}
	if strings.Contains(out+errOut, src.Password) || strings.Contains(out+errOut, dst.Password) {
		t.Error("a password appears in the output")
	}
}

func TestDifferenceExitsThree(t *testing.T) {
	db, src, dst := pair(t)
	dst.Exec(t, db, `UPDATE items SET v = 'changed' WHERE id = 4242; DELETE FROM items WHERE id = 17; INSERT INTO tags VALUES ('a', 1)`)
	t.Setenv("SEREN_SOURCE_URL", src.URL("postgres").Secret())
	t.Setenv("SEREN_TARGET_URL", dst.URL("postgres").Secret())

	out, errOut, err := runVerify(t, "--include-databases", db, "--chunk-rows", "1000")
	if code := exitCode(err); code != clio.ExitProblems {
		t.Fatalf("exit code %d (%v), want %d\n%s", code, err, clio.ExitProblems, errOut)
	}
	if !strings.Contains(err.Error(), "2 of 2 tables differ") {
		t.Errorf("error %q", err)
	}
	for _, want := range []string{"DIFFERENT", "id=4242 differs", "id=17 missing on the target", "no primary key", "NOT identical: 2 different"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runVerify(t, "--include-databases", db, "--chunk-rows", "1000", "--output", "json")
	if exitCode(err) != clio.ExitProblems {
		t.Fatalf("json: %v", err)
	}
	var rep struct {
		Identical bool `json:"identical"`
		Summary   struct {
			Tables, Different int
		} `json:"summary"`
		Tables []struct {
			Table      string `json:"table"`
			Status     string `json:"status"`
			SourceRows int64  `json:"source_rows"`
			TargetRows int64  `json:"target_rows"`
			Ranges     []struct {
				From, To []string
				Rows     []struct {
					Key  []string
					Kind string
				}
			} `json:"ranges"`
		} `json:"tables"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if rep.Identical || rep.Summary.Tables != 2 || rep.Summary.Different != 2 || len(rep.Tables) != 2 {
		t.Fatalf("json report %+v", rep)
	}
	items := rep.Tables[0]
	if items.Table != "items" || items.Status != "different" || items.SourceRows != 5000 || items.TargetRows != 4999 {
		t.Errorf("items %+v", items)
	}
	kinds := map[string]string{}
	for _, r := range items.Ranges {
		for _, row := range r.Rows {
			kinds[row.Key[0]] = row.Kind
		}
	}
	if kinds["4242"] != "changed" || kinds["17"] != "missing_on_target" || len(kinds) != 2 {
		t.Errorf("differing rows %v", kinds)
	}
}

func TestMissingTableAndDatabase(t *testing.T) {
	db, src, dst := pair(t)
	dst.Exec(t, db, `DROP TABLE tags`)
	other, _ := src.NewDB(t, dst)
	src.Exec(t, other, `CREATE TABLE x (id int PRIMARY KEY)`)
	out, _, err := runVerify(t, "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(),
		"--include-databases", db+","+other)
	if exitCode(err) != clio.ExitProblems {
		t.Fatalf("exit %d: %v", exitCode(err), err)
	}
	for _, want := range []string{"MISSING", other + ": the database does not exist on the target", "2 missing", "1 database(s) missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := [][]string{
		{"--source", "postgres://h/db", "--target", "postgres://h/db", "--output", "yaml"},
		{"--source", "postgres://h/db", "--target", "postgres://h/db", "--jobs", "0"},
		{"--target", "postgres://h/db"},
		{"--source", "mysql://h/db", "--target", "postgres://h/db"},
		{"--source", "postgres://h/db", "--target", "postgres://h/db", "--include-tables", "a.b", "--exclude-tables", "a.c"},
	}
	t.Setenv("SEREN_SOURCE_URL", "")
	t.Setenv("SEREN_TARGET_URL", "")
	for _, args := range cases {
		_, _, err := runVerify(t, args...)
		if exitCode(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, exitCode(err), err)
		}
	}
}

func TestCountFormats(t *testing.T) {
	cases := []struct {
		n           int64
		rows, count string
	}{
		{0, "0", "0 rows"}, {1, "1", "1 row"}, {999, "999", "999 rows"}, {1000, "1,000", "1,000 rows"},
		{10000000, "10,000,000", "10,000,000 rows"}, {-1234, "-1,234", "-1,234 rows"},
	}
	for _, c := range cases {
		if got := rows(c.n); got != c.rows {
			t.Errorf("rows(%d) = %q, want %q", c.n, got, c.rows)
		}
		if got := plural(c.n, "row"); got != c.count {
			t.Errorf("plural(%d) = %q, want %q", c.n, got, c.count)
		}
	}
}
