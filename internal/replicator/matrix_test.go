package replicator_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/dbcompare"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// matrixPairs are the source → target majors CI covers: the upgrades users
// make (out-of-support 12–14 to 16–18) and the same major.
var matrixPairs = [][2]int{{12, 18}, {13, 17}, {14, 16}, {15, 15}, {15, 17}}

// matrixParallel bounds how many pairs (three clusters each) run at once.
const matrixParallel = 2

// TestMatrix runs, for each pair of majors: init of the full fixture with
// sync while the source takes writes, cutover and verify; then it compares
// the copy (catalog and rows, with dbcompare) to a pg_dump/pg_restore of the
// same source into a fresh server of the target's major, so that the
// majors' own catalog differences cancel out. -short runs only 12→18.
//
// The majors come from scripts/pgversions.sh (SEREN_PG_BIN_<major>); a pair
// whose majors are missing skips locally and fails in CI.
func TestMatrix(t *testing.T) {
	pairs := matrixPairs
	if testing.Short() {
		pairs = pairs[:1]
	}
	sem := make(chan struct{}, matrixParallel)
	for _, p := range pairs {
		t.Run(fmt.Sprintf("%d_to_%d", p[0], p[1]), func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			matrixPair(t, p[0], p[1])
		})
	}
}

func matrixPair(t *testing.T, srcMajor, dstMajor int) {
	pgtest.RequireMajor(t, srcMajor, dstMajor)
	small := []string{"shared_buffers = 32MB"}
	src := pgtest.New(t, pgtest.Options{Major: srcMajor, Settings: small})
	dst := pgtest.New(t, pgtest.Options{Major: dstMajor, Settings: small})
	db, _ := src.NewDB(t, dst)
	owner, reader := fixture(t, src, db)
	// An MD5 password hash, the default before PostgreSQL 14 (18 deprecates
	// MD5 but still takes the hash).
	src.Exec(t, "postgres", fmt.Sprintf(`SET password_encryption = 'md5'; ALTER ROLE %s PASSWORD 'owner-secret'`, owner))
	src.Exec(t, "postgres", fmt.Sprintf(`ALTER ROLE %[1]s CONNECTION LIMIT 5 VALID UNTIL '2099-01-01 00:00:00+00';
ALTER ROLE %[1]s SET search_path = app, public; GRANT %[2]s TO %[1]s WITH ADMIN OPTION;
ALTER DATABASE %[3]s SET search_path = app, "Odd Schema ""quoted""", public;
ALTER ROLE %[1]s IN DATABASE %[3]s SET search_path = "$user", app`, owner, reader, db))
	src.Exec(t, db, `
CREATE TABLE accounts (id bigserial PRIMARY KEY, balance numeric NOT NULL, note text);
INSERT INTO accounts (balance, note) SELECT g, 'seed' FROM generate_series(1, 20000) g;
CREATE TABLE audit (what text, at timestamptz);
INSERT INTO audit SELECT 'seed', now() FROM generate_series(1, 5000);`)

	// validate finds nothing blocking on either side.
	if code, out, errOut := runCLI(t, "validate", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db); code != 0 {
		t.Fatalf("validate %d→%d exit %d\n%s\n%s", srcMajor, dstMajor, code, out, errOut)
	}

	// init with sync while the source takes writes.
	ctx, stop := context.WithCancel(context.Background())
	var ops atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); writer(t, ctx, src, db, &ops) }()
	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--yes", "--jobs", "2", "--split-table-bytes", "65536")
	if code != 0 {
		stop()
		wg.Wait()
		t.Fatalf("init %d→%d exit %d\n%s\n%s", srcMajor, dstMajor, code, out, errOut)
	}
	before := ops.Load()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ops.Load() < before+200 {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if ops.Load() < 100 {
		t.Fatalf("the writer made only %d changes; the test proves nothing", ops.Load())
	}
	t.Logf("%d changes on the source during and after init (%d during)", ops.Load(), before)

	// Re-running sync keeps what init set up (it reads the publication,
	// slot and subscription back from each side's catalogs).
	code, out, errOut = runCLI(t, "sync", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db)
	if code != 0 {
		t.Fatalf("sync re-run exit %d\n%s\n%s", code, out, errOut)
	}

	// status reads both sides' replication catalogs.
	code, out, errOut = runCLI(t, "status", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--output", "json")
	if code != 0 || !strings.Contains(out, db) {
		t.Fatalf("status exit %d\n%s\n%s", code, out, errOut)
	}

	// cutover waits for zero lag, copies sequences and removes the
	// replication set-up; verify then compares both sides.
	code, out, errOut = runCLI(t, "cutover", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--yes", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("cutover exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "verify", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db)
	if code != 0 {
		t.Fatalf("verify exit %d\n%s\n%s", code, out, errOut)
	}
	s, d := src.Conn(t, db), dst.Conn(t, db)
	a, err := dbcompare.Take(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dbcompare.Take(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if diff := dbcompare.Diff(rowsOnly(a), rowsOnly(b)); diff != "" {
		t.Fatalf("rows differ after cutover:\n%s", diff)
	}
	if diff := dbcompare.Diff(roleState(t, src, owner, reader), roleState(t, dst, owner, reader)); diff != "" {
		t.Fatalf("roles differ:\n%s", diff)
	}

	matrixRowFilter(t, src, dst)

	// The reference: pg_dump/pg_restore of the (now quiet) source into a
	// fresh server of the target's major, holding the same roles.
	ref := pgtest.New(t, pgtest.Options{Major: dstMajor, Settings: small})
	ref.Exec(t, "postgres", fmt.Sprintf(`CREATE ROLE %s LOGIN; CREATE ROLE %s NOLOGIN; GRANT %s TO %s`, owner, reader, reader, owner))
	dumpRestore(t, src, ref, db)
	dbcompare.Equal(t, ref.Conn(t, db), d)
}

// matrixRowFilter runs init with a row filter and sync: refused with the
// reason before PostgreSQL 15 (publications have no row filters), leaving
// no slot behind; from 15 on, only the filtered rows arrive, by copy and by
// replication.
func matrixRowFilter(t *testing.T, src, dst *pgtest.Cluster) {
	t.Helper()
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL);
ALTER TABLE items REPLICA IDENTITY FULL;
INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g;`)
	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--yes", "--table-filter", "items:price <= 100")
	ctx := context.Background()
	if src.Major < 15 {
		if code == 0 || !strings.Contains(errOut, "PostgreSQL 15") {
			t.Fatalf("init with a row filter and sync from PostgreSQL %d: exit %d, want a refusal naming PostgreSQL 15\n%s\n%s", src.Major, code, out, errOut)
		}
		var slots int
		if err := src.Conn(t, "postgres").QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE database = $1", db).Scan(&slots); err != nil || slots != 0 {
			t.Fatalf("refused init left %d replication slots on the source (err %v)", slots, err)
		}
		return
	}
	if code != 0 {
		t.Fatalf("init with a row filter: exit %d\n%s\n%s", code, out, errOut)
	}
	src.Exec(t, db, "INSERT INTO items VALUES (1001, 50), (1002, 5000); UPDATE items SET price = 7 WHERE id = 3")
	code, out, errOut = runCLI(t, "cutover", "--source", adminURL(src), "--target", adminURL(dst),
		"--include-databases", db, "--yes", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("cutover exit %d\n%s\n%s", code, out, errOut)
	}
	var n, sum int
	if err := dst.Conn(t, db).QueryRow(ctx, "SELECT count(*), sum(price) FROM items").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if want := 100*101/2 - 3 + 7 + 50; n != 101 || sum != want {
		t.Fatalf("target holds %d rows summing to %d, want 101 rows summing to %d", n, sum, want)
	}
}

// roleState lists the attributes, password hash, settings and memberships
// of the named roles, in columns every major since 12 has.
func roleState(t *testing.T, c *pgtest.Cluster, names ...string) dbcompare.Snapshot {
	t.Helper()
	ctx := context.Background()
	var out dbcompare.Snapshot
	for _, q := range []string{
		`SELECT 'role', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,
		        rolconnlimit, coalesce(rolvaliduntil::text, ''), coalesce(rolpassword, ''),
		        coalesce((SELECT setconfig::text FROM pg_db_role_setting WHERE setrole = a.oid AND setdatabase = 0), '')
		 FROM pg_authid a WHERE rolname = ANY($1)`,
		`SELECT 'member', r.rolname, m.rolname, am.admin_option
		 FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
		 WHERE r.rolname = ANY($1) OR m.rolname = ANY($1)`,
	} {
		rows, err := c.Conn(t, "postgres").Query(ctx, q, names)
		if err != nil {
			t.Fatalf("read roles: %v", err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatalf("read roles: %v", err)
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = fmt.Sprint(v)
			}
			out = append(out, strings.Join(parts, " | "))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("read roles: %v", err)
		}
	}
	if len(out) < len(names) {
		t.Fatalf("roles %v: found only %v", names, out)
	}
	return out
}

// dumpRestore copies db from src to a new database of the same name on dst
// with the machine's pg_dump and pg_restore (Debian's 15, which dump
// sources up to 15 and restore into any newer target).
func dumpRestore(t *testing.T, src, dst *pgtest.Cluster, db string) {
	t.Helper()
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dump")
	tool := func(c *pgtest.Cluster, name string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), append([]string{
			"-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", c.User}, args...)...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+c.Password)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, stderr.String())
		}
	}
	tool(src, "pg_dump", "-Fc", "-f", file, "-d", db)
	tool(dst, "pg_restore", "--create", "--exit-on-error", "-d", "postgres", file)
}
