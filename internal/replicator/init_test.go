package replicator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/cli"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/dbcompare"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) {
	// The kill -9 test runs the CLI as a child process: this very binary.
	if os.Getenv("SEREN_TEST_CLI") == "1" {
		os.Exit(cli.Main(os.Args[1:]))
	}
	os.Exit(pgtest.Run(m))
}

// runCLI runs the CLI in-process and returns exit code, stdout, stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	io, _, out, errOut := iostreams.Test()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code := cli.Run(ctx, io, args)
	return code, out.String(), errOut.String()
}

func adminURL(c *pgtest.Cluster) string { return c.URL("postgres").Secret() }

func fixture(t *testing.T, src *pgtest.Cluster, db string) (owner, reader string) {
	t.Helper()
	owner, reader = db+"_owner", db+"_reader"
	src.Exec(t, "postgres", fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'owner-secret'; CREATE ROLE %s NOLOGIN; GRANT %s TO %s;
COMMENT ON ROLE %s IS 'fixture owner'`, owner, reader, reader, owner, owner))
	sql, err := os.ReadFile("testdata/fixture.sql")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("{{owner}}", owner, "{{reader}}", reader, "CURRENT_DB_PLACEHOLDER", pg.Ident(db)).Replace(string(sql))
	src.Exec(t, db, s)
	return owner, reader
}

func TestInitCopiesEveryKindOfObject(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	fixture(t, src, db)

	// Child tools run through wrappers that record their argv and
	// environment, to prove the password never reaches their arguments.
	bin, argvLog := recordingBinDir(t)
	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--no-sync", "--yes", "--jobs", "3", "--pg-bin-dir", bin, "--split-table-bytes", "65536")
	if code != 0 {
		t.Fatalf("init exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	dbcompare.Equal(t, src.Conn(t, db), dst.Conn(t, db))

	// The roles came across with their password hash and comment.
	var hasPw bool
	if err := dst.Conn(t, "postgres").QueryRow(context.Background(),
		"SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1", db+"_owner").Scan(&hasPw); err != nil || !hasPw {
		t.Fatalf("owner role on target: password copied = %v, err = %v", hasPw, err)
	}
	// Nothing of ours is left behind.
	var n int
	_ = dst.Conn(t, db).QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '_seren%'").Scan(&n)
	if n != 0 {
		t.Fatalf("checkpoint schema left on target")
	}
	// Sentinel: the superuser passwords of both clusters appear nowhere.
	argv, _ := os.ReadFile(argvLog)
	if len(argv) == 0 {
		t.Fatal("wrappers recorded no child tool invocation")
	}
	for _, pw := range []string{src.Password, dst.Password} {
		for name, text := range map[string]string{"stdout": out, "stderr": errOut, "child argv": string(argv)} {
			if strings.Contains(text, pw) {
				t.Fatalf("password found in %s", name)
			}
		}
	}
	if !strings.Contains(errOut, "post-data") || !strings.Contains(errOut, "WALL TIME") {
		t.Fatalf("no phase summary in output:\n%s", errOut)
	}
}

// recordingBinDir makes a directory of pg_dump/pg_restore wrappers that
// append their arguments to a log and exec the real tools.
func recordingBinDir(t *testing.T) (string, string) {
	t.Helper()
	real, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "argv.log")
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >> %s\nexec %s \"$@\"\n", tool, log, filepath.Join(real, tool))
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, log
}

func TestInitCopiesExactlyTheSelection(t *testing.T) {
	src, dst := pgtest.Pair(t)
	a, _ := src.NewDB(t, dst)
	b, _ := src.NewDB(t, dst)
	c, _ := src.NewDB(t, dst)
	for _, db := range []string{a, b, c} {
		src.Exec(t, db, `
CREATE SCHEMA s;
CREATE TABLE public.keep (id int PRIMARY KEY, created date);
CREATE TABLE public.skip (id int PRIMARY KEY);
CREATE TABLE s.keep (id int PRIMARY KEY, status text);
CREATE TABLE public.shape (id int PRIMARY KEY);
INSERT INTO public.keep SELECT g, current_date - g FROM generate_series(1, 400) g;
INSERT INTO public.skip SELECT generate_series(1, 10);
INSERT INTO s.keep SELECT g, CASE WHEN g % 2 = 0 THEN 'live' ELSE 'archived' END FROM generate_series(1, 100) g;
INSERT INTO public.shape SELECT generate_series(1, 10);`)
	}
	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", a+","+b, "--exclude-tables", a+".skip,"+b+".skip",
		"--schema-only-tables", a+".shape", "--table-filter", b+".s.keep:status = 'live'",
		"--time-filter", "keep:created:30 days", "--no-sync", "--yes")
	if code != 0 {
		t.Fatalf("init exit %d\n%s\n%s", code, out, errOut)
	}
	ctx := context.Background()
	count := func(db, table string) int {
		var n int
		if err := dst.Conn(t, db).QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	var exists bool
	_ = dst.Conn(t, "postgres").QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", c).Scan(&exists)
	if exists {
		t.Errorf("database %s was not selected but exists on the target", c)
	}
	want := map[string]int{
		a + " public.keep": 29, a + " public.skip": -1, a + " s.keep": 100, a + " public.shape": 0,
		b + " public.keep": 29, b + " public.skip": -1, b + " s.keep": 50, b + " public.shape": 10,
	}
	for k, w := range want {
		db, table, _ := strings.Cut(k, " ")
		if got := count(db, table); got != w {
			t.Errorf("%s: %d rows on target, want %d (-1 = table absent)", k, got, w)
		}
	}
}

func TestInitResumesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-million-row copy")
	}
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `
CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric);
INSERT INTO big SELECT g, md5(g::text), g * 1.5 FROM generate_series(1, 3000000) g;
CREATE INDEX big_v ON big (v);
CREATE TABLE keyless (v text);
INSERT INTO keyless SELECT 'x' || (g % 100) FROM generate_series(1, 200000) g;`)
	for i := 0; i < 8; i++ {
		src.Exec(t, db, fmt.Sprintf("CREATE TABLE small%d (id int PRIMARY KEY, v text); INSERT INTO small%d SELECT g, 'v' || g FROM generate_series(1, 20000) g;", i, i))
	}
	args := []string{"init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db, "--no-sync", "--yes", "--jobs", "2", "--json"}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SEREN_TEST_CLI=1")
	var childErr bytes.Buffer
	cmd.Stderr = &childErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once some tables are recorded finished but the big one is not.
	conn := dst.Conn(t, "postgres")
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	killed := false
	for time.Now().Before(deadline) {
		var done int
		err := conn.QueryRow(ctx, "SELECT 1").Scan(new(int))
		if err == nil {
			if dconn, err := pgConn(ctx, dst, db); err == nil {
				_ = dconn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE item LIKE 'table:%') FROM _seren_replicator_checkpoint.done
					WHERE NOT EXISTS (SELECT 1 FROM _seren_replicator_checkpoint.done WHERE item = 'table:public.big')`).Scan(&done)
				dconn.Close(ctx)
			}
		}
		if done >= 2 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("never reached a point to kill at; child stderr:\n%s", childErr.String())
	}
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("re-run exit %d\n%s\n%s", code, out, errOut)
	}
	var sum struct {
		Tables  int `json:"tables"`
		Resumed int `json:"tables_resumed"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, out)
	}
	if sum.Resumed < 2 || sum.Resumed >= sum.Tables {
		t.Fatalf("re-run resumed %d of %d tables; want the finished ones skipped and the rest copied", sum.Resumed, sum.Tables)
	}
	dbcompare.Equal(t, src.Conn(t, db), dst.Conn(t, db))
}
