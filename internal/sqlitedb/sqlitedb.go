// Package sqlitedb owns the one SQLite file the embedded job service keeps
// under its data directory (DIR/seren.db): opening it with the settings
// every embedded backend relies on (WAL, busy timeout, foreign keys,
// synchronous=NORMAL, immediate write transactions), creating it with 0600
// permissions, and the single ordered list of schema migrations for all
// embedded backends (job store, queue, job log, API keys).
//
// It uses modernc.org/sqlite, a pure-Go driver, so the binary needs no cgo.
//
// Transactions (db.BeginTx) start with BEGIN IMMEDIATE, taking the write
// lock at once: use them for read-modify-write, and plain statements for
// reads, which run beside the writer in WAL mode. Several processes (serve
// and its workers) may open the same file.
//
// Two helpers keep the hot paths cheap: Stmts prepares each statement once
// (per pooled connection) instead of on every call, and Batcher commits
// concurrent single-statement writes together (group commit).
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// FileName is the database file's name inside the service's data directory.
const FileName = "seren.db"

// busyTimeout is how long a statement waits for another writer (another
// goroutine or process on the same file) before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// maxConns is the size of the connection pool.
const maxConns = 8

// Open opens (creating if needed, with 0600 permissions) the SQLite
// database at path and brings its schema up to date.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("open database: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, hint.Wrap(fmt.Errorf("open database %s: create directory: %w", abs, err),
			"choose a --data-dir you can write to")
	}
	if err := createFile(abs); err != nil {
		return nil, err
	}
	db, err := openPool(abs)
	if err != nil {
		return nil, err
	}
	if err := setup(ctx, db, abs); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openPool opens the connection pool on abs without touching the file.
func openPool(abs string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	// One writer at a time is SQLite's rule anyway; a few connections let
	// readers run beside it (WAL) without holding a page cache per goroutine.
	// All of them stay open when idle: a new connection costs its PRAGMAs
	// and re-preparing every statement (Stmts), which a busy API would pay
	// again and again if idle ones were closed.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	return db, nil
}

func dsn(abs string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Write transactions take the write lock at BEGIN, so two transactions
	// that read then write wait for each other (busy_timeout) instead of
	// failing with SQLITE_BUSY on the upgrade.
	q.Set("_txlock", "immediate")
	return u.String() + "?" + q.Encode()
}

// createFile creates the database file with 0600 permissions if it does
// not exist; SQLite gives its -wal and -shm files the same permissions.
func createFile(abs string) error {
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return hint.Wrap(fmt.Errorf("create database %s: %w", abs, err), "choose a --data-dir you can write to")
}

func setup(ctx context.Context, db *sql.DB, abs string) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return hint.Wrap(fmt.Errorf("open database %s: %w", abs, err),
			"check that the file is a SQLite database written by this program and that the disk is not full")
	}
	if !strings.EqualFold(mode, "wal") {
		return hint.Wrap(fmt.Errorf("open database %s: journal mode is %q, want WAL", abs, mode),
			"put --data-dir on a local file system (WAL needs shared memory, which network file systems lack)")
	}
	if err := Migrate(ctx, db); err != nil {
		return fmt.Errorf("open database %s: %w", abs, err)
	}
	return nil
}

// Migrate applies the migrations the database has not seen yet, each in
// its own transaction, recording them in schema_version. A database from a
// newer release is refused rather than used half-understood.
func Migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		if err := apply(ctx, db, version, m); err != nil {
			return err
		}
	}
	var newest int
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_version").Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest > len(migrations) {
		return hint.Wrap(fmt.Errorf("database schema version %d is newer than this program knows (%d)", newest, len(migrations)),
			"run the newer postgres-seren-replicator release that last used this --data-dir")
	}
	return nil
}

func apply(ctx context.Context, db *sql.DB, version int, stmt string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %d: %w", version, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_version WHERE version = ?", version).Scan(&n); err != nil {
		return fmt.Errorf("migration %d: %w", version, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("migration %d: %w", version, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
		version, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("migration %d: record version: %w", version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %d: commit: %w", version, err)
	}
	return nil
}

// Version returns the schema version of db.
func Version(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// IsConstraint reports whether err is a SQLite constraint violation
// (UNIQUE, PRIMARY KEY, CHECK, FOREIGN KEY, NOT NULL).
func IsConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// Nanos stores a time as Unix nanoseconds; Time reads it back in UTC.
func Nanos(t time.Time) int64 { return t.UnixNano() }

// Time converts Unix nanoseconds back to a UTC time.
func Time(n int64) time.Time { return time.Unix(0, n).UTC() }
