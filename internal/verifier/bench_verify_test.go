//go:build benchverify

// The verify benchmark (not a test): builds a table of N rows on two
// throwaway clusters and runs the real binary's `verify` on it, printing
// wall time and peak RSS. Run through scripts/bench-verify.sh.
package verifier

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestBenchVerify(t *testing.T) {
	bin := os.Getenv("BENCH_BIN")
	if bin == "" {
		t.Fatal("set BENCH_BIN to the postgres-seren-replicator binary (scripts/bench-verify.sh does)")
	}
	sizes := strings.Fields(os.Getenv("BENCH_ROWS"))
	if len(sizes) == 0 {
		sizes = []string{"1000000", "10000000"}
	}
	jobs := os.Getenv("BENCH_JOBS")
	if jobs == "" {
		jobs = "2"
	}
	src, dst := pgtest.Pair(t)
	for _, s := range sizes {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("BENCH_ROWS: %v", err)
		}
		db, _ := src.NewDB(t, dst)
		dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
		build := fmt.Sprintf(`
CREATE TABLE big (id bigint PRIMARY KEY, account int NOT NULL, note text, amount numeric(12,2), at timestamptz, tags text[]);
INSERT INTO big SELECT i, i %% 9973, 'note ' || md5(i::text), (i %% 100000) / 100.0,
  '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second', ARRAY['t' || (i %% 7)]
FROM generate_series(1, %d) i;
CREATE TABLE big_nokey AS SELECT id, account, note FROM big WHERE id %% 10 = 0;
ANALYZE;`, n)
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range []*pgtest.Cluster{src, dst} {
			wg.Add(1)
			go func() { defer wg.Done(); c.Exec(t, db, build) }()
		}
		wg.Wait()
		var size string
		if err := src.Conn(t, db).QueryRow(context.Background(), "SELECT pg_size_pretty(pg_total_relation_size('big'))").Scan(&size); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("\n== %d rows (table %s, plus a key-less table of %d rows); built both sides in %s\n", n, size, n/10, time.Since(start).Round(time.Second))

		run := func(label string, wantCode int) {
			cmd := exec.Command(bin, "verify", "--include-databases", db, "--jobs", jobs)
			cmd.Env = append(os.Environ(), "SEREN_SOURCE_URL="+src.URL("postgres").Secret(), "SEREN_TARGET_URL="+dst.URL("postgres").Secret())
			var out, errOut strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errOut
			start := time.Now()
			err := cmd.Run()
			wall := time.Since(start)
			code := cmd.ProcessState.ExitCode()
			if code != wantCode {
				t.Fatalf("%s: exit %d (%v), want %d\n%s\n%s", label, code, err, wantCode, out.String(), errOut.String())
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			fmt.Printf("%-34s wall %-8s peak RSS %6.1f MiB  user %s sys %s  exit %d\n", label, wall.Round(100*time.Millisecond),
				float64(ru.Maxrss)/1024, time.Duration(ru.Utime.Nano()).Round(10*time.Millisecond), time.Duration(ru.Stime.Nano()).Round(10*time.Millisecond), code)
			if wantCode != 0 {
				fmt.Print(indent(out.String()))
			}
		}
		run("verify (identical)", 0)
		dst.Exec(t, db, fmt.Sprintf(`UPDATE big SET note = 'changed' WHERE id = %d; DELETE FROM big WHERE id = %d; INSERT INTO big_nokey VALUES (1, 1, 'extra')`, n/2, n-3))
		run("verify (1 changed, 1 missing row)", 3)
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
