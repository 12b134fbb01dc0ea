// Package apitest builds a complete API on the real embedded backends
// (one SQLite file in a temp dir, a local key file) for tests of the API,
// its client and the commands that use them. It also provides a fake clock
// and a log capture that tests grep for secrets.
package apitest

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"database/sql"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/apikeys/sqlitekeys"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/sqlitelog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/sqlitestore"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqlitequeue"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/localkey"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry/promtelemetry"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at a fixed instant.
func NewClock() *Clock {
	return &Clock{t: time.Date(2025, 11, 21, 8, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// LogBuffer collects log output; safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Env is an API on real embedded backends.
type Env struct {
	Handler http.Handler
	Config  api.Config
	DB      *sql.DB
	Store   *jobstore.Store
	Queue   *sqlitequeue.Queue
	Keeper  *secrets.Keeper
	Keys    *sqlitekeys.Keys
	Logs    *sqlitelog.Log
	Metrics *promtelemetry.Metrics
	Clock   *Clock
	LogBuf  *LogBuffer
	Dir     string
}

// New builds an Env. tweak, if not nil, adjusts the api.Config before the
// handler is built (limits, Canceller, poll interval).
func New(t testing.TB, tweak func(*api.Config)) *Env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, sqlitedb.FileName))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	clock := NewClock()
	wrapper, err := localkey.Open(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatalf("open key file: %v", err)
	}
	e := &Env{
		DB:      db,
		Store:   jobstore.New(sqlitestore.New(db), clock.Now),
		Queue:   sqlitequeue.New(db, sqlitequeue.Options{}),
		Keeper:  secrets.NewKeeper(wrapper),
		Keys:    sqlitekeys.New(db, clock.Now),
		Logs:    sqlitelog.New(db, clock.Now),
		Metrics: promtelemetry.New(),
		Clock:   clock,
		LogBuf:  &LogBuffer{},
		Dir:     dir,
	}
	e.Config = api.Config{
		Store:           e.Store,
		Queue:           e.Queue,
		Keeper:          e.Keeper,
		Keys:            e.Keys,
		Logs:            e.Logs,
		Metrics:         e.Metrics,
		LogPollInterval: 5 * time.Millisecond,
		Version:         "test",
		Now:             clock.Now,
		Logger:          slog.New(slog.NewJSONHandler(e.LogBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tweak != nil {
		tweak(&e.Config)
	}
	e.Handler = api.New(e.Config)
	return e
}

// NewKey creates an API key (its own principal) and returns its secret.
func (e *Env) NewKey(t testing.TB, name string) string {
	t.Helper()
	return e.NewKeyWith(t, name, apikeys.CreateOptions{})
}

// NewKeyWith creates an API key with a principal or the operator flag and
// returns its secret.
func (e *Env) NewKeyWith(t testing.TB, name string, o apikeys.CreateOptions) string {
	t.Helper()
	secret, err := e.Keys.Create(context.Background(), name, o)
	if err != nil {
		t.Fatalf("create API key %s: %v", name, err)
	}
	return secret
}
