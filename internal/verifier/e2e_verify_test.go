//go:build verifye2e

// End to end through the real binary: init with sync, verify while the
// source takes writes (informational: hot ranges may differ), then verify
// after the writes stop (must be identical). Run with:
//
//	go build -o /tmp/psr ./cmd/postgres-seren-replicator
//	BENCH_BIN=/tmp/psr go test -tags verifye2e -run TestE2E -v ./internal/verifier/
package verifier

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestE2EInitThenVerify(t *testing.T) {
	bin := os.Getenv("BENCH_BIN")
	if bin == "" {
		t.Fatal("set BENCH_BIN to the postgres-seren-replicator binary")
	}
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE items (id bigserial PRIMARY KEY, v text, n int);
INSERT INTO items (v, n) SELECT md5(i::text), i FROM generate_series(1, 300000) i;
CREATE TABLE log (at timestamptz default now(), msg text);
INSERT INTO log (msg) SELECT 'm' || i FROM generate_series(1, 10000) i;
CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
INSERT INTO pairs SELECT i, 'k' || (i % 10), i FROM generate_series(1, 20000) i;`)
	env := append(os.Environ(), "SEREN_SOURCE_URL="+src.URL("postgres").Secret(), "SEREN_TARGET_URL="+dst.URL("postgres").Secret())
	runBin := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := runBin("init", "--include-databases", db, "--yes", "--local", "--no-interactive")
	if code != 0 {
		t.Fatalf("init exit %d\n%s", code, out)
	}
	// Writer on the source during verify.
	ctx, cancel := context.WithCancel(context.Background())
	var writes atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := src.Conn(t, db)
		for i := 0; ctx.Err() == nil; i++ {
			_, err := c.Exec(context.Background(), fmt.Sprintf(`INSERT INTO items (v, n) VALUES ('w', %d); UPDATE items SET n = n + 1 WHERE id = %d; DELETE FROM items WHERE id = %d; INSERT INTO log (msg) VALUES ('w'); UPDATE pairs SET v = v + 1 WHERE a = %d`, i, 1+i*7%300000, 2+i*13%300000, 1+i%20000))
			if err != nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	}()
	start := time.Now()
	out, code = runBin("verify", "--include-databases", db)
	fmt.Printf("verify during writes (%s, %d write txns so far): exit %d\n%s\n", time.Since(start).Round(time.Millisecond), writes.Load(), code, out)
	cancel()
	<-done
	out, code = runBin("verify", "--include-databases", db)
	fmt.Printf("verify after writes stopped: exit %d\n%s\n", code, out)
	if code != 0 {
		t.Fatalf("verify after writes stopped: exit %d", code)
	}
	if !strings.Contains(out, "caught up") {
		t.Errorf("verify did not wait for the subscription")
	}
}
