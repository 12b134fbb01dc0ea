// Package pgtest starts throwaway PostgreSQL clusters for tests, from the
// machine's server binaries, on free loopback ports, in temporary
// directories. When the tests run as root the servers run as a non-root OS
// user (postgres, or $PGTEST_OS_USER). Nothing is mocked.
//
// A package's tests share one source (wal_level=logical) and one target
// cluster, started on first use and removed when the test binary ends:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
//	src, dst := pgtest.Pair(t)
//	url := src.NewDB(t) // a fresh database, dropped after the test
//
// Other majors (the version matrix) come from $SEREN_PG_BIN_<major>, which
// scripts/pgversions.sh exports after installing them; a test asking for a
// major that is not installed skips locally and fails in CI (CI=true):
//
//	src, dst := pgtest.PairVersions(t, 12, 18)
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Options configure a cluster.
type Options struct {
	// Settings are extra postgresql.conf lines, e.g. "wal_level = replica".
	Settings []string
	// Password of the superuser "postgres"; random when empty.
	Password string
	// Major is the server's major version (12, 13, …); 0 means the
	// machine's default binaries (BinDir).
	Major int
}

// Cluster is one running PostgreSQL server.
type Cluster struct {
	// Major is the server's major version, e.g. 15.
	Major    int
	BinDir   string
	Dir      string
	Port     int
	User     string
	Password string

	cred *syscall.Credential
}

var (
	mu       sync.Mutex
	shared   []*Cluster
	src, dst *Cluster
	pairErr  error
	pairOnce sync.Once
	seq      int
)

// Run runs the tests and then removes every cluster they started.
func Run(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for _, c := range shared {
		c.Remove()
	}
	return code
}

// Pair returns the package's shared source and target clusters.
func Pair(t testing.TB) (source, target *Cluster) {
	t.Helper()
	pairOnce.Do(func() {
		src, pairErr = start(Options{})
		if pairErr != nil {
			return
		}
		dst, pairErr = start(Options{})
	})
	if pairErr != nil {
		t.Fatalf("pgtest: %v", pairErr)
	}
	return src, dst
}

// New starts a dedicated cluster for one test; it is removed when the test
// ends. When opts.Major is not installed the test skips, or fails in CI.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Major != 0 {
		RequireMajor(t, opts.Major)
	}
	c, err := start(opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(c.Remove)
	return c
}

// BinDir finds the PostgreSQL server binaries: $PG_BINDIR, else the newest
// /usr/lib/postgresql/*/bin, else the directory of initdb on PATH.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries found (install postgresql-15 or set PG_BINDIR)")
}

// MajorBinDir finds the server binaries of one major version:
// $SEREN_PG_BIN_<major> (exported by scripts/pgversions.sh), else
// /usr/lib/postgresql/<major>/bin.
func MajorBinDir(major int) (string, error) {
	var tried []string
	if d := os.Getenv(fmt.Sprintf("SEREN_PG_BIN_%d", major)); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
		tried = append(tried, d)
	}
	d := fmt.Sprintf("/usr/lib/postgresql/%d/bin", major)
	if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
		return d, nil
	}
	tried = append(tried, d)
	return "", fmt.Errorf("PostgreSQL %d server binaries not found (looked in %s); run scripts/pgversions.sh, or set SEREN_PG_BIN_%d",
		major, strings.Join(tried, ", "), major)
}

// InCI reports whether the tests run in CI (CI=true), where a missing
// PostgreSQL major is a failure, not a skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// RequireMajor skips the test (or fails it in CI) unless every named major
// is installed.
func RequireMajor(t testing.TB, majors ...int) {
	t.Helper()
	for _, m := range majors {
		if _, err := MajorBinDir(m); err != nil {
			if InCI() {
				t.Fatalf("pgtest: %v", err)
			}
			t.Skipf("pgtest: %v", err)
		}
	}
}

// PairVersions starts a dedicated source (wal_level=logical, like every
// cluster here) of major srcMajor and a target of major dstMajor for one
// test; both are removed when the test ends. It skips the test (fails it in
// CI) when a major is not installed.
func PairVersions(t testing.TB, srcMajor, dstMajor int) (source, target *Cluster) {
	t.Helper()
	RequireMajor(t, srcMajor, dstMajor)
	return New(t, Options{Major: srcMajor}), New(t, Options{Major: dstMajor})
}

func majorOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func start(opts Options) (*Cluster, error) {
	var bin string
	var err error
	if opts.Major != 0 {
		bin, err = MajorBinDir(opts.Major)
	} else {
		bin, err = BinDir()
	}
	if err != nil {
		return nil, err
	}
	c := &Cluster{BinDir: bin, User: "postgres", Password: opts.Password, Major: opts.Major}
	if c.Password == "" {
		c.Password = "pw-" + randHex(8)
	}
	if os.Geteuid() == 0 {
		name := os.Getenv("PGTEST_OS_USER")
		if name == "" {
			name = "postgres"
		}
		u, err := user.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("tests run as root, so the server must run as a non-root OS user, but user %q does not exist (create it or set PGTEST_OS_USER): %w", name, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	c.Dir, err = os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	if err := os.Chmod(c.Dir, 0o755); err != nil {
		return nil, err
	}
	pwfile := filepath.Join(c.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.Dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
		if err := os.Chown(pwfile, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "--pwfile="+pwfile,
		"-A", "scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"); err != nil {
		c.Remove()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		c.Remove()
		return nil, err
	}
	c.Port = port
	conf := []string{
		fmt.Sprintf("port = %d", port),
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", c.Dir),
		"wal_level = logical",
		"max_replication_slots = 40",
		"max_wal_senders = 40",
		"max_worker_processes = 32",
		"max_logical_replication_workers = 16",
		"max_connections = 200",
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"shared_buffers = 128MB",
		"wal_sender_timeout = 10s",
		"wal_receiver_timeout = 10s",
		"wal_retrieve_retry_interval = 1s",
	}
	conf = append(conf, opts.Settings...)
	if err := appendFile(filepath.Join(c.data(), "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		c.Remove()
		return nil, err
	}
	hba := "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(c.data(), "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		c.Remove()
		return nil, err
	}
	if c.cred != nil {
		_ = os.Chown(filepath.Join(c.data(), "pg_hba.conf"), int(c.cred.Uid), int(c.cred.Gid))
	}
	if err := c.Start(); err != nil {
		c.Remove()
		return nil, err
	}
	if c.Major == 0 {
		if c.Major, err = c.serverMajor(); err != nil {
			c.Remove()
			return nil, err
		}
	}
	mu.Lock()
	shared = append(shared, c)
	mu.Unlock()
	return c, nil
}

func (c *Cluster) serverMajor() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres").Secret())
	if err != nil {
		return 0, fmt.Errorf("connect to read the server version: %w", err)
	}
	defer conn.Close(ctx)
	v, err := pg.ServerVersion(ctx, conn)
	if err != nil {
		return 0, err
	}
	return v / 10000, nil
}

func (c *Cluster) data() string { return filepath.Join(c.Dir, "data") }

// Start starts a stopped cluster and waits until it accepts connections.
func (c *Cluster) Start() error {
	out, err := c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, tail(string(log), 2000))
	}
	return nil
}

// Stop stops the cluster (fast shutdown), keeping its data.
func (c *Cluster) Stop() error {
	out, err := c.run("pg_ctl", "-D", c.data(), "-m", "fast", "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Remove stops the cluster immediately and deletes its files.
func (c *Cluster) Remove() {
	if _, err := os.Stat(filepath.Join(c.data(), "postmaster.pid")); err == nil {
		_, _ = c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "-t", "30", "stop")
	}
	_ = os.RemoveAll(c.Dir)
}

// Log returns the server log (for failure messages).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	return string(b)
}

// URL returns the superuser URL for database db.
func (c *Cluster) URL(db string) pg.URL {
	return pg.MustParseURL(fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", c.User, c.Password, c.Port, db))
}

// Conn opens a connection to db, closed when the test ends.
func (c *Cluster) Conn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL(db).Secret())
	if err != nil {
		t.Fatalf("pgtest: connect %s: %v", db, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs SQL statements in db and fails the test on error.
func (c *Cluster) Exec(t testing.TB, db string, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL(db).Secret())
	if err != nil {
		t.Fatalf("pgtest: connect %s: %v", db, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: exec in %s: %v\n%s", db, err, sql)
	}
}

// NewDBName returns a database name unique in this test binary.
func NewDBName(t testing.TB) string {
	mu.Lock()
	seq++
	n := seq
	mu.Unlock()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("t%d_%s", n, name)
}

// NewDB creates a fresh database on c and drops it (and any database of the
// same name on the other clusters given) when the test ends.
func (c *Cluster) NewDB(t testing.TB, alsoDropOn ...*Cluster) (string, pg.URL) {
	t.Helper()
	name := NewDBName(t)
	c.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(name))
	t.Cleanup(func() {
		for _, cl := range append([]*Cluster{c}, alsoDropOn...) {
			cl.DropDB(name)
		}
	})
	return name, c.URL(name)
}

// DropDB drops db if it exists (dropping subscriptions that would block it).
func (c *Cluster) DropDB(db string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if conn, err := pgx.Connect(ctx, c.URL(db).Secret()); err == nil {
		rows, _ := conn.Query(ctx, "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
		subs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, s := range subs {
			_, _ = conn.Exec(ctx, "ALTER SUBSCRIPTION "+pg.Ident(s)+" DISABLE")
			_, _ = conn.Exec(ctx, "ALTER SUBSCRIPTION "+pg.Ident(s)+" SET (slot_name = NONE)")
			_, _ = conn.Exec(ctx, "DROP SUBSCRIPTION "+pg.Ident(s))
		}
		conn.Close(ctx)
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres").Secret())
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", db)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pg.Ident(db)+" WITH (FORCE)")
}

func (c *Cluster) run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.BinDir, tool), args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
