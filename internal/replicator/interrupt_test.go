package replicator_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/dbcompare"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// Ctrl-C of a three-database init after the first database is done: the
// printed resume command completes the rest without copying the first
// again, and the original command run once more skips all three.
func TestInitInterruptedResumesWithPrintedCommand(t *testing.T) {
	src, dst := pgtest.Pair(t)
	var dbs []string
	for i := 0; i < 3; i++ {
		db, _ := src.NewDB(t, dst)
		dbs = append(dbs, db)
	}
	sort.Strings(dbs) // the order init copies them in
	src.Exec(t, dbs[0], `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'first' FROM generate_series(1, 1000) g;`)
	src.Exec(t, dbs[1], `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 400000) g;`)
	src.Exec(t, dbs[2], `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'third' FROM generate_series(1, 1000) g;`)
	args := []string{"init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", strings.Join(dbs, ","), "--yes", "--jobs", "2"}

	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SEREN_TEST_CLI=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin := dst.Conn(t, "postgres")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var n int
		_ = admin.QueryRow(ctx, "SELECT count(*) FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE d.datname = $1", dbs[0]).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the first database never finished:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("init finished before the interrupt; make the second database bigger\n%s", stderr.String())
	}
	// What the finished database looks like; a copy again would change it.
	var subOID, fileNode uint32
	first := dst.Conn(t, dbs[0])
	if err := first.QueryRow(ctx, `SELECT (SELECT oid FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
	pg_relation_filenode('t')`).Scan(&subOID, &fileNode); err != nil {
		t.Fatal(err)
	}

	var resume string
	lines := strings.Split(stderr.String(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "To resume") && i+1 < len(lines) {
			resume = strings.TrimSpace(lines[i+1])
		}
	}
	if resume == "" {
		t.Fatalf("no resume command printed:\n%s", stderr.String())
	}
	if strings.Contains(resume, dbs[0]) || !strings.Contains(resume, dbs[1]+","+dbs[2]) {
		t.Fatalf("resume command does not name exactly the unfinished databases: %s", resume)
	}
	f := strings.Fields(resume)
	for i := range f {
		f[i] = strings.Trim(f[i], "'")
		if i > 0 && f[i-1] == "--source" {
			f[i] = adminURL(src)
		}
		if i > 0 && f[i-1] == "--target" {
			f[i] = adminURL(dst)
		}
	}
	if code, out, errOut := runCLI(t, f[1:]...); code != 0 {
		t.Fatalf("resume command exit %d: %s\n%s\n%s", code, resume, out, errOut)
	}
	var subOID2, fileNode2 uint32
	if err := first.QueryRow(ctx, `SELECT (SELECT oid FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
	pg_relation_filenode('t')`).Scan(&subOID2, &fileNode2); err != nil {
		t.Fatal(err)
	}
	if subOID2 != subOID || fileNode2 != fileNode {
		t.Fatalf("the finished database %s was copied again", dbs[0])
	}
	for _, db := range dbs[1:] {
		dbcompare.Equal(t, src.Conn(t, db), dst.Conn(t, db))
	}
	// The original command again: all three finished and streaming.
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("original command again: exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Count(errOut, "already copied by an earlier run and streaming") != 3 {
		t.Fatalf("the original command did not skip the three finished databases:\n%s", errOut)
	}
}
