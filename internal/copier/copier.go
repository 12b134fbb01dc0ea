// Package copier streams table data from a source database to a target
// database: COPY … TO STDOUT on the source piped straight into COPY … FROM
// STDIN on the target, bytes only (no row decoding, no temporary files),
// many streams in parallel, large tables split into block ranges, every
// stream inside a transaction that imports one exported snapshot.
//
// Each table (or range) is written in one target transaction that also
// records it in the checkpoint schema, so a table is either wholly copied
// and recorded or not at all; a re-run skips recorded tables and copies
// the rest after truncating them (never appending).
package copier

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Task is one table to copy.
type Task struct {
	Table catalog.Table
	// Predicate limits the rows copied ("" = all). It runs on the source
	// inside the read-only snapshot transaction.
	Predicate string
	// Binary selects COPY's binary format (only built-in column types).
	Binary bool
}

// Config configures one database's copy.
type Config struct {
	Source, Target pg.URL
	// Snapshot is the exported snapshot every source transaction imports.
	Snapshot string
	// Jobs is the number of parallel streams.
	Jobs  int
	Tasks []Task
	// RangeBytes splits tables larger than this into block ranges
	// (0 = 256 MiB). Needs PostgreSQL 14+ on the source (TID range scans).
	RangeBytes int64
	// SourceVersion is server_version_num of the source.
	SourceVersion int
	// Done lists checkpoint items already finished (from DoneItems).
	Done map[string]int64
	// Steps lists the work to do on a table once its rows are in (e.g. one
	// step per index); steps run in parallel pool slots while other tables
	// still copy.
	Steps func(t catalog.Table) []Step
	// Finish runs after a table's steps (e.g. ANALYZE); then the table is
	// recorded as done.
	Finish func(ctx context.Context, target *pgx.Conn, t catalog.Table) error
	// OnProgress receives progress events; it must not block.
	OnProgress func(Event)
}

// Event reports progress.
type Event struct {
	Table       catalog.Table
	Done        bool  // table finished (data, steps and Finish)
	Skipped     bool  // finished in an earlier run
	Bytes       int64 // bytes streamed since the previous event for this table
	TablesDone  int
	TablesTotal int
}

// Stats summarise a copy.
type Stats struct {
	Tables        int
	TablesSkipped int
	Bytes         int64
	Rows          int64
	Duration      time.Duration
}

// TableItem is the checkpoint key of a finished table (data and indexes).
func TableItem(t catalog.Table) string { return "table:" + t.QualifiedName() }

// dataItem is the checkpoint key of a table whose data is in.
func dataItem(t catalog.Table) string { return "data:" + t.QualifiedName() }

// Step is one piece of post-copy work on a table's target connection.
type Step func(ctx context.Context, target *pgx.Conn) error

type work struct {
	task    *tableState
	rng     int // -1 whole table
	step    Step
	finish  bool
	prepare bool // truncate before ranges
}

type tableState struct {
	Task
	ranges    int // 0 = not split
	remaining int // ranges not yet done
	stepsLeft int
	blocks    int64
}

// afterData returns the work that follows a table's data: its steps, or
// straight to finish when it has none.
func afterData(cfg Config, st *tableState) []work {
	var steps []Step
	if cfg.Steps != nil {
		steps = cfg.Steps(st.Table)
	}
	if len(steps) == 0 {
		return []work{{task: st, finish: true}}
	}
	st.stepsLeft = len(steps)
	out := make([]work, len(steps))
	for i, s := range steps {
		out[i] = work{task: st, step: s}
	}
	return out
}

// Run copies every task. It returns when all are done or one fails (the
// others are cancelled).
func Run(ctx context.Context, cfg Config) (Stats, error) {
	start := time.Now()
	if cfg.Jobs < 1 {
		cfg.Jobs = 1
	}
	if cfg.RangeBytes <= 0 {
		cfg.RangeBytes = 256 << 20
	}
	var stats Stats
	var queue []work
	var states []*tableState
	total := len(cfg.Tasks)
	var tablesDone atomic.Int64
	for i := range cfg.Tasks {
		st := &tableState{Task: cfg.Tasks[i]}
		if _, ok := cfg.Done[TableItem(st.Table)]; ok {
			stats.TablesSkipped++
			n := tablesDone.Add(1)
			emit(cfg, Event{Table: st.Table, Done: true, Skipped: true, TablesDone: int(n), TablesTotal: total})
			continue
		}
		states = append(states, st)
	}
	var afterOnly []work
	// Largest first, so the dominant table starts at once.
	sort.SliceStable(states, func(i, j int) bool { return states[i].Table.SizeBytes > states[j].Table.SizeBytes })
	blockSize := int64(8192)
	for _, st := range states {
		if _, ok := cfg.Done[dataItem(st.Table)]; ok {
			// Data committed in an earlier run; only its indexes remain.
			afterOnly = append(afterOnly, afterData(cfg, st)...)
			continue
		}
		if cfg.SourceVersion >= 140000 && st.Table.SizeBytes > cfg.RangeBytes {
			st.ranges = int((st.Table.SizeBytes + cfg.RangeBytes - 1) / cfg.RangeBytes)
			st.remaining = st.ranges
			st.blocks = st.Table.SizeBytes / blockSize
			queue = append(queue, work{task: st, prepare: true})
			continue
		}
		queue = append(queue, work{task: st, rng: -1})
	}
	queue = append(afterOnly, queue...)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		running int
	)
	var bytes atomic.Int64
	next := func() (work, bool) {
		mu.Lock()
		defer mu.Unlock()
		for len(queue) == 0 && running > 0 && ctx.Err() == nil {
			cond.Wait()
		}
		if len(queue) == 0 || ctx.Err() != nil {
			return work{}, false
		}
		w := queue[0]
		queue = queue[1:]
		running++
		return w, true
	}
	finish := func(more ...work) {
		mu.Lock()
		running--
		// Follow-up work goes first: it finishes tables (indexes) early.
		queue = append(append([]work{}, more...), queue...)
		mu.Unlock()
		cond.Broadcast()
	}
	context.AfterFunc(ctx, func() { mu.Lock(); mu.Unlock(); cond.Broadcast() })

	var wg sync.WaitGroup
	for i := 0; i < cfg.Jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var src, dst *pgx.Conn
			defer func() {
				if src != nil {
					src.Close(context.Background())
				}
				if dst != nil {
					dst.Close(context.Background())
				}
			}()
			for {
				w, ok := next()
				if !ok {
					return
				}
				var err error
				if dst == nil {
					if dst, err = openTarget(ctx, cfg.Target); err != nil {
						finish()
						cancel(err)
						return
					}
				}
				var more []work
				switch {
				case w.prepare:
					err = prepareSplit(ctx, dst, w.task)
					if err == nil {
						for r := 0; r < w.task.ranges; r++ {
							more = append(more, work{task: w.task, rng: r})
						}
					}
				case w.step != nil:
					err = w.step(ctx, dst)
					if err == nil {
						Boundary()
						mu.Lock()
						w.task.stepsLeft--
						last := w.task.stepsLeft == 0
						mu.Unlock()
						if last {
							more = append(more, work{task: w.task, finish: true})
						}
					}
				case w.finish:
					if cfg.Finish != nil {
						err = cfg.Finish(ctx, dst, w.task.Table)
					}
					if err == nil {
						err = markTableDone(ctx, dst, w.task.Table)
					}
					if err == nil {
						Boundary()
						n := tablesDone.Add(1)
						emit(cfg, Event{Table: w.task.Table, Done: true, TablesDone: int(n), TablesTotal: total})
					}
				default:
					if src == nil {
						if src, err = pg.Connect(ctx, cfg.Source, "source"); err != nil {
							finish()
							cancel(err)
							return
						}
						if _, err = src.Exec(ctx, SessionSettings); err != nil {
							finish()
							cancel(fmt.Errorf("configure source session: %w", err))
							return
						}
					}
					err = copyOne(ctx, src, dst, cfg, w, func(d int64) {
						bytes.Add(d)
						emit(cfg, Event{Table: w.task.Table, Bytes: d, TablesDone: int(tablesDone.Load()), TablesTotal: total})
					})
					if err == nil {
						Boundary()
						last := true
						if w.rng >= 0 {
							mu.Lock()
							w.task.remaining--
							last = w.task.remaining == 0
							mu.Unlock()
						}
						if last {
							mu.Lock()
							more = append(more, afterData(cfg, w.task)...)
							mu.Unlock()
						}
					}
				}
				if err != nil {
					finish()
					cancel(err)
					return
				}
				finish(more...)
			}
		}()
	}
	wg.Wait()
	stats.Tables = total
	stats.Bytes = bytes.Load()
	stats.Duration = time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return stats, err
	}
	return stats, nil
}

func emit(cfg Config, e Event) {
	if cfg.OnProgress != nil {
		cfg.OnProgress(e)
	}
}

// SessionSettings override, for our own sessions, database and role
// settings that would break a copy: a read-only default (a source made
// read-only by cutover --block-writes, whose setting init copies), or
// timeouts shorter than a COPY or an index build.
const SessionSettings = "SET default_transaction_read_only = off; SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0"

func openTarget(ctx context.Context, u pg.URL) (*pgx.Conn, error) {
	c, err := pg.Connect(ctx, u, "target")
	if err != nil {
		return nil, err
	}
	// Our checkpoint commits in the same transaction as the data, so an
	// unflushed commit lost in a target crash is simply copied again.
	if _, err := c.Exec(ctx, SessionSettings+"; SET synchronous_commit = off; SET maintenance_work_mem = '256MB'"); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("configure target session: %w", err)
	}
	return c, nil
}

// prepareSplit empties a table that will be filled by several range
// transactions, and forgets range checkpoints of an earlier run (ranges are
// block ranges of one snapshot and mean nothing at another).
func prepareSplit(ctx context.Context, dst *pgx.Conn, st *tableState) error {
	tx, err := dst.Begin(ctx)
	if err != nil {
		return fmt.Errorf("truncate %s: %w", st.Table, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "TRUNCATE ONLY "+st.Table.QualifiedName()); err != nil {
		return fmt.Errorf("truncate %s on target: %w", st.Table, err)
	}
	if err := clearItems(ctx, tx, "range:"+st.Table.QualifiedName()+":"); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("truncate %s: %w", st.Table, err)
	}
	return nil
}

func markTableDone(ctx context.Context, dst *pgx.Conn, t catalog.Table) error {
	return markDone(ctx, dst, TableItem(t), t.SizeBytes)
}

// copyOne streams one table or one range inside a source snapshot
// transaction and a target transaction, recording the checkpoint in the
// latter.
func copyOne(ctx context.Context, src, dst *pgx.Conn, cfg Config, w work, progress func(int64)) error {
	t := w.task.Table
	what := t.String()
	if w.rng >= 0 {
		what = fmt.Sprintf("%s range %d/%d", t, w.rng+1, w.task.ranges)
	}
	if _, err := src.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return fmt.Errorf("copy %s: begin on source: %w", what, err)
	}
	defer src.Exec(context.Background(), "ROLLBACK") //nolint:errcheck
	if cfg.Snapshot != "" {
		if _, err := src.Exec(ctx, "SET TRANSACTION SNAPSHOT "+pg.Literal(cfg.Snapshot)); err != nil {
			return fmt.Errorf("copy %s: import snapshot %s on source: %w", what, cfg.Snapshot, err)
		}
	}
	// A row filter was checked (and re-emitted) under standard string
	// literal rules: run it under them, whatever the connection's options
	// or the database's defaults say (selection.SessionSetup).
	if _, err := src.Exec(ctx, "SET LOCAL standard_conforming_strings = on"); err != nil {
		return fmt.Errorf("copy %s: set up source session: %w", what, err)
	}
	tx, err := dst.Begin(ctx)
	if err != nil {
		return fmt.Errorf("copy %s: begin on target: %w", what, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck

	freeze := ""
	if w.rng < 0 {
		// Truncate in this transaction: the copy replaces whatever an
		// interrupted run left, and COPY FREEZE becomes possible.
		if _, err := tx.Exec(ctx, "TRUNCATE ONLY "+t.QualifiedName()); err != nil {
			return fmt.Errorf("copy %s: truncate on target: %w", what, err)
		}
		freeze = ", FREEZE"
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = pg.Ident(c)
	}
	colList := strings.Join(cols, ", ")
	format := "text"
	if w.task.Binary {
		format = "binary"
	}
	var where []string
	if w.rng >= 0 {
		lo := w.task.blocks * int64(w.rng) / int64(w.task.ranges)
		hi := w.task.blocks * int64(w.rng+1) / int64(w.task.ranges)
		if w.rng > 0 {
			where = append(where, fmt.Sprintf("ctid >= '(%d,0)'::tid", lo))
		}
		if w.rng < w.task.ranges-1 {
			where = append(where, fmt.Sprintf("ctid < '(%d,0)'::tid", hi))
		}
	}
	if w.task.Predicate != "" {
		where = append(where, "("+w.task.Predicate+")")
	}
	var out string
	if len(where) == 0 {
		out = fmt.Sprintf("COPY %s (%s) TO STDOUT (FORMAT %s)", t.QualifiedName(), colList, format)
	} else {
		out = fmt.Sprintf("COPY (SELECT %s FROM ONLY %s WHERE %s) TO STDOUT (FORMAT %s)", colList, t.QualifiedName(), strings.Join(where, " AND "), format)
	}
	in := fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT %s%s)", t.QualifiedName(), colList, format, freeze)

	// pgconn hands CopyTo one row per Write; buffer them so the pipe moves
	// large chunks (one goroutine hand-off per 256 KiB, not per row).
	pr, pw := io.Pipe()
	buf := bufio.NewWriterSize(pw, 256<<10)
	counter := &countingWriter{w: buf, report: progress}
	srcErr := make(chan error, 1)
	go func() {
		_, err := src.PgConn().CopyTo(ctx, counter, out)
		if err == nil {
			err = buf.Flush()
		}
		counter.flush()
		pw.CloseWithError(err)
		srcErr <- err
	}()
	_, dstErr := tx.Conn().PgConn().CopyFrom(ctx, pr, in)
	pr.CloseWithError(errors.New("target stopped reading"))
	sErr := <-srcErr
	if sErr != nil {
		return fmt.Errorf("copy %s: read from source: %w", what, explainPredicate(sErr, w.task.Predicate))
	}
	if dstErr != nil {
		return fmt.Errorf("copy %s: write to target: %w", what, dstErr)
	}
	// The data is recorded with the data; the table itself is recorded
	// once its steps (indexes) and Finish have also succeeded.
	item := dataItem(t)
	if w.rng >= 0 {
		item = fmt.Sprintf("range:%s:%d/%d", t.QualifiedName(), w.rng, w.task.ranges)
	}
	if err := markDone(ctx, tx, item, counter.total); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("copy %s: commit on target: %w", what, err)
	}
	return nil
}

func explainPredicate(err error, pred string) error {
	var pgErr *pgconn.PgError
	if pred != "" && errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "42") || pgErr.Code == "25006") {
		return fmt.Errorf("row filter %q: %w", pred, err)
	}
	return err
}

// countingWriter counts bytes and reports them in batches.
type countingWriter struct {
	w       io.Writer
	total   int64
	pending int64
	report  func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.total += int64(n)
	c.pending += int64(n)
	if c.pending >= 4<<20 {
		c.flush()
	}
	return n, err
}

func (c *countingWriter) flush() {
	if c.pending > 0 && c.report != nil {
		c.report(c.pending)
	}
	c.pending = 0
}
