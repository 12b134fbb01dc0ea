// Package replicator is the engine facade: Init, Validate, Sync, Status,
// Verify and Cutover, each taking a context, Options and a Reporter. The
// CLI and the job worker both call these; the engine knows nothing of jobs,
// HTTP or AWS.
package replicator

import (
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// Options are shared by every engine command.
type Options struct {
	Source, Target pg.URL
	// Rules select databases and tables (nil = everything).
	Rules *selection.Rules
	// Jobs is the number of parallel streams (default: number of CPUs).
	Jobs int
	// DropExisting allows replacing non-empty target databases.
	DropExisting bool
	// NoSync copies only (no continuous replication).
	NoSync bool
	// NoResume ignores any checkpoint and starts fresh.
	NoResume bool
	// PgBinDir overrides where pg_dump/pg_restore/pg_dumpall are found.
	PgBinDir string
	// SplitBytes splits tables larger than this into block ranges copied
	// in parallel (0 = 256 MiB).
	SplitBytes int64
	// Subscription shapes the subscription's connection string (password
	// handling; see docs/sync.md).
	Subscription logical.SubOptions
}

// Progress is a snapshot of a running command's progress.
type Progress struct {
	Phase              string
	CurrentDatabase    string
	DatabasesCompleted int
	DatabasesTotal     int
	CurrentTable       string
	TablesCompleted    int
	TablesTotal        int
	BytesCopied        int64
	BytesTotal         int64
}

// Reporter receives progress and log lines. Implementations must be safe
// for concurrent use and must not block for long.
type Reporter interface {
	Progress(p Progress)
	// Logf writes one human-readable log line (never containing passwords).
	Logf(format string, args ...any)
}

// Discard is a Reporter that drops everything.
type Discard struct{}

// Progress implements Reporter.
func (Discard) Progress(Progress) {}

// Logf implements Reporter.
func (Discard) Logf(string, ...any) {}
