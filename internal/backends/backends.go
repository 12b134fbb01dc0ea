// Package backends is the only place that turns configuration into
// concrete backends of the job service (job store, queue, secrets, API
// keys, job logs, metrics, worker launcher). Everything else — the API,
// the service loops, the worker — sees only the interfaces.
//
// Two backends exist: "embedded" (the default: one SQLite file and a
// master key file under a data directory, local worker processes,
// Prometheus metrics) and "aws" (DynamoDB, SQS, KMS, SSM, EC2, CloudWatch;
// configured from SEREN_* environment variables). The backend is chosen by
// Config.Backend, or the SEREN_BACKEND environment variable.
package backends

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/apikeys/sqlitekeys"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/sqlitelog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/sqlitestore"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher/locallauncher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqlitequeue"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/localkey"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry/promtelemetry"
)

// Backend names.
const (
	Embedded = "embedded"
	AWS      = "aws"
)

// Environment variables read by FromEnv.
const (
	EnvBackend = "SEREN_BACKEND"
	EnvDataDir = "SEREN_DATA_DIR"
)

// Config selects and configures the backends.
type Config struct {
	// Backend is Embedded (default) or AWS.
	Backend string
	// DataDir holds the embedded backends' files: sqlitedb.FileName,
	// localkey.FileName and the workers' output (locallauncher.LogDirName).
	DataDir string

	// WorkerBinary is the executable the local launcher starts (default:
	// this program). WorkerArgs are appended to its `worker` arguments.
	WorkerBinary string
	WorkerArgs   []string
	// WorkerGrace is the local launcher's SIGTERM → SIGKILL wait.
	WorkerGrace time.Duration

	// AWS holds the aws backend's settings (FromEnv fills it).
	AWS AWSConfig

	Now    func() time.Time
	Logger *slog.Logger
}

// Parts selects what Open opens, so each process opens only what it uses
// (on AWS, only what its IAM role allows).
type Parts uint

// The parts.
const (
	PartStore Parts = 1 << iota
	PartQueue
	PartKeeper
	PartKeys       // apikeys.Verifier
	PartKeyManager // apikeys.Manager (embedded only)
	PartLogs
	PartMetrics
	PartLauncher
	PartSelf // the worker's own machine (aws: its EC2 instance); embedded: nothing
)

// What each process opens.
const (
	ForServe  = PartStore | PartQueue | PartKeeper | PartKeys | PartLogs | PartMetrics | PartLauncher
	ForWorker = PartStore | PartKeeper | PartLogs | PartSelf
	ForKeys   = PartKeyManager
)

// Set is the opened backends; fields of parts not asked for are nil.
type Set struct {
	Backend    string
	DataDir    string // embedded only
	Store      *jobstore.Store
	Queue      queue.Queue
	Keeper     *secrets.Keeper
	Keys       apikeys.Verifier
	KeyManager apikeys.Manager
	Logs       joblog.Log
	Metrics    telemetry.Metrics
	Launcher   launcher.Launcher
	// WorkerLogs is where local workers write their output (embedded).
	WorkerLogs interface {
		LogPath(jobID string) string
		PurgeLogs(before time.Time) (int, error)
	}

	// Self is, on an AWS worker instance (PartSelf), the instance itself
	// (aws.go); nil elsewhere.
	Self *Self

	closers  []func() error
	flushers []func(context.Context) error // see Flush (aws.go)
}

// Close closes everything Open opened, last opened first.
func (s *Set) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}

// FromEnv fills what c leaves empty from the environment: SEREN_BACKEND,
// SEREN_DATA_DIR (else DefaultDataDir), and the aws settings.
func FromEnv(c Config) Config {
	if c.Backend == "" {
		c.Backend = strings.ToLower(strings.TrimSpace(os.Getenv(EnvBackend)))
	}
	if c.Backend == "" {
		c.Backend = Embedded
	}
	if c.DataDir == "" {
		c.DataDir = os.Getenv(EnvDataDir)
	}
	if c.DataDir == "" && c.Backend == Embedded {
		c.DataDir = DefaultDataDir()
	}
	c.AWS = c.AWS.fromEnv() // aws.go
	return c
}

// DefaultDataDir is $XDG_DATA_HOME/postgres-seren-replicator, else
// ~/.local/share/postgres-seren-replicator, else ./seren-data.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "postgres-seren-replicator")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "share", "postgres-seren-replicator")
	}
	return "seren-data"
}

// Open opens the parts of the configured backend.
func Open(ctx context.Context, c Config, parts Parts) (*Set, error) {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch c.Backend {
	case "", Embedded:
		return openEmbedded(ctx, c, parts)
	case AWS:
		return openAWS(ctx, c, parts)
	}
	return nil, hint.Wrap(fmt.Errorf("unknown backend %q", c.Backend),
		fmt.Sprintf("set %s to %s or %s", EnvBackend, Embedded, AWS))
}

func openEmbedded(ctx context.Context, c Config, parts Parts) (s *Set, err error) {
	if c.DataDir == "" {
		return nil, hint.Wrap(errors.New("no data directory for the embedded backends"), "pass --data-dir DIR (or set "+EnvDataDir+")")
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", c.DataDir, err)
	}
	s = &Set{Backend: Embedded, DataDir: dir}
	opened := s // `return nil, err` sets s to nil before this runs
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	var db *sql.DB
	if parts&(PartStore|PartQueue|PartKeys|PartKeyManager|PartLogs|PartLauncher) != 0 {
		if db, err = sqlitedb.Open(ctx, filepath.Join(dir, sqlitedb.FileName)); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, db.Close)
	}
	var store *jobstore.Store
	if parts&(PartStore|PartLauncher) != 0 {
		store = jobstore.New(sqlitestore.New(db), c.Now)
	}
	if parts&PartStore != 0 {
		s.Store = store
	}
	if parts&PartQueue != 0 {
		q := sqlitequeue.New(db, sqlitequeue.Options{Now: c.Now})
		s.Queue = q
		s.closers = append(s.closers, q.Close)
	}
	if parts&PartKeeper != 0 {
		w, err := localkey.Open(filepath.Join(dir, localkey.FileName))
		if err != nil {
			return nil, err
		}
		s.Keeper = secrets.NewKeeper(w)
		s.closers = append(s.closers, s.Keeper.Close)
	}
	if parts&(PartKeys|PartKeyManager) != 0 {
		k := sqlitekeys.New(db, c.Now)
		if parts&PartKeys != 0 {
			s.Keys = k
		}
		if parts&PartKeyManager != 0 {
			s.KeyManager = k
		}
	}
	if parts&PartLogs != 0 {
		s.Logs = sqlitelog.New(db, c.Now)
	}
	if parts&PartMetrics != 0 {
		s.Metrics = promtelemetry.New()
	}
	if parts&PartLauncher != 0 {
		l, err := locallauncher.New(locallauncher.Options{
			Binary:    c.WorkerBinary,
			DataDir:   dir,
			ExtraArgs: c.WorkerArgs,
			// Local workers use this service's backends, whatever the environment says.
			Env:    append(os.Environ(), EnvBackend+"="+Embedded),
			Grace:  c.WorkerGrace,
			Now:    c.Now,
			Logger: c.Logger,
			Known:  knownWorkers(store),
		})
		if err != nil {
			return nil, err
		}
		s.Launcher = l
		s.WorkerLogs = l
	}
	return s, nil
}

// knownWorkers lists the workers recorded on active jobs, so a restarted
// serve adopts workers that outlived its predecessor.
func knownWorkers(store *jobstore.Store) func(context.Context) ([]launcher.Worker, error) {
	return func(ctx context.Context) ([]launcher.Worker, error) {
		// Only jobs with a worker: a deep queue must not make every
		// Launcher.List (several a second) decode every queued job.
		active, err := store.ActiveWithWorker(ctx)
		if err != nil {
			return nil, err
		}
		var out []launcher.Worker
		for _, j := range active {
			if j.WorkerID != "" {
				out = append(out, launcher.Worker{ID: j.WorkerID, JobID: j.ID, InstanceType: j.InstanceType})
			}
		}
		return out, nil
	}
}
