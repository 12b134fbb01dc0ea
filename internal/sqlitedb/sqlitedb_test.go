package sqlitedb_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

func open(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func pragma(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestOpenSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", sqlitedb.FileName)
	db := open(t, path)
	for name, want := range map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"synchronous":  "1", // NORMAL
		"busy_timeout": "10000",
	} {
		// Every pooled connection has the settings, not just the first.
		for range 3 {
			if got := pragma(t, db, name); got != want {
				t.Errorf("PRAGMA %s = %s, want %s", name, got, want)
			}
		}
	}
	if _, err := db.Exec(`INSERT INTO jobs (id, owner, status, created_at, expires_at, version, doc) VALUES ('j', 'o', 'running', 1, 2, 1, '{}')`); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatalf("stat %s: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", filepath.Base(f), st.Mode().Perm())
		}
	}
	st, err := os.Stat(filepath.Dir(path))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode %v (err %v), want 0700", st.Mode().Perm(), err)
	}
}

func TestMigrationsOnceAndSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), sqlitedb.FileName)
	db, err := sqlitedb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := sqlitedb.Version(context.Background(), db)
	if err != nil || v1 < 1 {
		t.Fatalf("version %d, %v", v1, err)
	}
	if _, err := db.Exec(`INSERT INTO api_keys (id, name, hash, created_at) VALUES ('k', 'n', x'00', 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, path)
	v2, err := sqlitedb.Version(context.Background(), db)
	if err != nil || v2 != v1 {
		t.Errorf("version after reopen %d, %v; want %d", v2, err, v1)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&n); err != nil || n != v1 {
		t.Errorf("schema_version has %d rows, want %d", n, v1)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM api_keys`).Scan(&n); err != nil || n != 1 {
		t.Errorf("data lost across reopen: %d rows, %v", n, err)
	}
}

func TestConcurrentFirstOpen(t *testing.T) {
	// serve and a worker process may start together on a new data dir.
	path := filepath.Join(t.TempDir(), sqlitedb.FileName)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := sqlitedb.Open(context.Background(), path)
			if err != nil {
				errs <- err
				return
			}
			db.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), sqlitedb.FileName)
	db, err := sqlitedb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_version (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = sqlitedb.Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "newer") || hint.Of(err) == "" {
		t.Errorf("Open of a newer schema: %v (hint %q)", err, hint.Of(err))
	}
}

func TestOddPaths(t *testing.T) {
	for _, name := range []string{"with space.db", "q?mark.db", "hash#.db", "pct%20.db"} {
		path := filepath.Join(t.TempDir(), name)
		open(t, path)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%q: database not at the given path: %v", name, err)
		}
	}
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), sqlitedb.FileName)
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not sqlite\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitedb.Open(context.Background(), path); err == nil || hint.Of(err) == "" {
		t.Errorf("Open of a text file: %v (hint %q)", err, hint.Of(err))
	}
}

func TestIsConstraint(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), sqlitedb.FileName))
	ins := `INSERT INTO api_keys (id, name, hash, created_at) VALUES ('k', 'n', x'00', 1)`
	if _, err := db.Exec(ins); err != nil {
		t.Fatal(err)
	}
	_, err := db.Exec(ins)
	if !sqlitedb.IsConstraint(err) {
		t.Errorf("duplicate primary key: IsConstraint(%v) = false", err)
	}
	_, err = db.Exec(`SELECT * FROM no_such_table`)
	if sqlitedb.IsConstraint(err) {
		t.Errorf("IsConstraint(%v) = true", err)
	}
}
