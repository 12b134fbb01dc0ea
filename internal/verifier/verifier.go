package verifier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// Defaults for Options left zero.
const (
	DefaultChunkRows      = 100_000
	DefaultMaxRanges      = 20
	DefaultCatchupTimeout = 5 * time.Minute
	DefaultRechecks       = 3
)

// Options configure Verify.
type Options struct {
	Source, Target pg.URL
	// Rules select databases and tables (nil = everything).
	Rules *selection.Rules
	// Jobs is the number of ranges compared at once (default 1); each
	// holds one connection to each side.
	Jobs int
	// ChunkRows is the target number of rows per key range (default 100000).
	ChunkRows int64
	// MaxRanges caps the differing key ranges reported per table (default 20).
	MaxRanges int
	// CatchupTimeout bounds the wait for a subscriber to confirm the
	// source's WAL position (default 5 minutes; negative: do not wait).
	CatchupTimeout time.Duration
	// Rechecks is how many times ranges that differ are compared again
	// after another catch-up while a subscription is replicating
	// (default 3; negative: none).
	Rechecks int
	// Logf receives progress lines (nil: none). Never given passwords.
	Logf func(format string, args ...any)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ProgressEvery is the interval between progress lines (default 10s).
	ProgressEvery time.Duration

	// afterPass, for tests, runs after each comparison pass of a database
	// (0: the first, then each re-check round).
	afterPass func(round int)
}

func (o Options) withDefaults() Options {
	if o.Jobs < 1 {
		o.Jobs = 1
	}
	if o.ChunkRows < 1 {
		o.ChunkRows = DefaultChunkRows
	}
	if o.MaxRanges < 1 {
		o.MaxRanges = DefaultMaxRanges
	}
	if o.CatchupTimeout == 0 {
		o.CatchupTimeout = DefaultCatchupTimeout
	}
	if o.Rechecks == 0 {
		o.Rechecks = DefaultRechecks
	}
	if o.Rechecks < 0 {
		o.Rechecks = 0
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 10 * time.Second
	}
	return o
}

// Status is the outcome for one table.
type Status string

// Table outcomes.
const (
	StatusOK        Status = "ok"
	StatusDifferent Status = "different"
	StatusMissing   Status = "missing" // the table does not exist on the target
	StatusError     Status = "error"   // it could not be compared
)

// Comparison methods.
const (
	MethodChunked    = "chunked"     // primary-key ranges
	MethodWholeTable = "whole-table" // no primary key: one hash of all rows
	MethodSchemaOnly = "schema-only" // rows are not replicated: existence only
)

// Report is the outcome of Verify. Its JSON form is a contract for scripts.
type Report struct {
	Databases []DatabaseResult `json:"databases"`
	// Tables are ordered by database, schema, table.
	Tables     []TableResult `json:"tables"`
	DurationMS int64         `json:"duration_ms"`
}

// Identical reports whether every compared table matched and none failed.
func (r *Report) Identical() bool {
	if r == nil {
		return false
	}
	for _, t := range r.Tables {
		if t.Status != StatusOK {
			return false
		}
	}
	for _, d := range r.Databases {
		if d.MissingOnTarget {
			return false
		}
	}
	return true
}

// Count returns how many tables have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, t := range r.Tables {
		if t.Status == s {
			n++
		}
	}
	return n
}

// DatabaseResult says how one database was compared.
type DatabaseResult struct {
	Name            string `json:"name"`
	MissingOnTarget bool   `json:"missing_on_target,omitempty"`
	// Subscriptions on the target that replicate from the source; when
	// present, reads started after the subscriber confirmed CaughtUpLSN.
	Subscriptions []string `json:"subscriptions,omitempty"`
	CaughtUpLSN   string   `json:"caught_up_lsn,omitempty"`
	// Rechecks is the number of re-check rounds run; Settled counts ranges
	// that differed at first and matched after a later catch-up (writes
	// that were in flight).
	Rechecks int      `json:"rechecks,omitempty"`
	Settled  int      `json:"settled_ranges,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// TableResult is the outcome for one table.
type TableResult struct {
	Database string `json:"database"`
	Schema   string `json:"schema"`
	Table    string `json:"table"`
	Status   Status `json:"status"`
	Method   string `json:"method,omitempty"`
	// KeyColumns name the primary key the ranges are expressed in.
	KeyColumns []string `json:"key_columns,omitempty"`
	// Predicate restricts the rows compared on both sides (table or time filter).
	Predicate  string `json:"predicate,omitempty"`
	SourceRows int64  `json:"source_rows"`
	TargetRows int64  `json:"target_rows"`
	Chunks     int    `json:"chunks"`
	// Ranges are the key ranges that differ, in key order, at most
	// MaxRanges; RangesOmitted counts the rest.
	Ranges        []KeyRange `json:"ranges,omitempty"`
	RangesOmitted int        `json:"ranges_omitted,omitempty"`
	Notes         []string   `json:"notes,omitempty"`
	Error         string     `json:"error,omitempty"`
	DurationMS    int64      `json:"duration_ms"`
}

// Name is schema.table for messages.
func (t TableResult) Name() string { return t.Schema + "." + t.Table }

// KeyRange is a primary-key range [From, To) whose rows differ. A nil
// From is the start of the table, a nil To its end. Values are the key
// columns' text forms.
type KeyRange struct {
	From       []string `json:"from"`
	To         []string `json:"to"`
	SourceRows int64    `json:"source_rows"`
	TargetRows int64    `json:"target_rows"`
	// Rows name the differing rows when the range was narrowed to a few.
	Rows []RowDiff `json:"rows,omitempty"`
}

// Row difference kinds.
const (
	RowMissing = "missing_on_target"
	RowExtra   = "extra_on_target"
	RowChanged = "changed"
)

// RowDiff is one row that differs.
type RowDiff struct {
	Key  []string `json:"key"`
	Kind string   `json:"kind"`
}

// Verify compares every selected table of every selected database on the
// source and the target. report, when not nil, is called once per table as
// soon as its outcome is known (never concurrently). The error is non-nil
// when the comparison could not run, or when some tables could not be
// compared (the report then says which).
func Verify(ctx context.Context, opts Options, report func(TableResult)) (*Report, error) {
	if opts.Source.IsZero() || opts.Target.IsZero() {
		return nil, errors.New("verify: source and target URLs are required")
	}
	opts = opts.withDefaults()
	start := opts.Now()
	var emitMu sync.Mutex
	emit := func(r TableResult) {
		if report == nil {
			return
		}
		emitMu.Lock()
		defer emitMu.Unlock()
		report(r)
	}

	srcDBs, dstDBs, err := listDatabases(ctx, opts)
	if err != nil {
		return nil, err
	}
	onTarget := make(map[string]bool, len(dstDBs))
	for _, d := range dstDBs {
		onTarget[d.Name] = true
	}
	rep := &Report{Databases: []DatabaseResult{}, Tables: []TableResult{}}
	for _, db := range srcDBs {
		d := &dbRun{opts: opts, name: db.Name, emit: emit}
		dr, tables, err := d.run(ctx, onTarget[db.Name])
		if err != nil {
			return nil, err
		}
		rep.Databases = append(rep.Databases, dr)
		rep.Tables = append(rep.Tables, tables...)
	}
	sort.SliceStable(rep.Tables, func(i, j int) bool {
		a, b := rep.Tables[i], rep.Tables[j]
		if a.Database != b.Database {
			return a.Database < b.Database
		}
		if a.Schema != b.Schema {
			return a.Schema < b.Schema
		}
		return a.Table < b.Table
	})
	rep.DurationMS = opts.Now().Sub(start).Milliseconds()
	if n := rep.Count(StatusError); n > 0 {
		var names []string
		for _, t := range rep.Tables {
			if t.Status == StatusError && len(names) < 5 {
				names = append(names, t.Database+"."+t.Name())
			}
		}
		return rep, fmt.Errorf("verify: %d table(s) could not be compared (%s)", n, strings.Join(names, ", "))
	}
	return rep, nil
}

// listDatabases returns the selected source databases and the target's.
func listDatabases(ctx context.Context, opts Options) (src, dst []catalog.Database, err error) {
	sc, err := pg.Connect(ctx, opts.Source, "source")
	if err != nil {
		return nil, nil, err
	}
	defer sc.Close(context.WithoutCancel(ctx))
	dc, err := pg.Connect(ctx, opts.Target, "target")
	if err != nil {
		return nil, nil, err
	}
	defer dc.Close(context.WithoutCancel(ctx))
	for _, side := range []struct {
		q    pg.Querier
		role string
	}{{sc, "source"}, {dc, "target"}} {
		v, err := pg.ServerVersion(ctx, side.q)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", side.role, err)
		}
		if err := pg.CheckVersion(v, side.role); err != nil {
			return nil, nil, err
		}
	}
	if src, err = catalog.ListDatabases(ctx, sc, opts.Rules); err != nil {
		return nil, nil, fmt.Errorf("source: %w", err)
	}
	if dst, err = catalog.ListDatabases(ctx, dc, nil); err != nil {
		return nil, nil, fmt.Errorf("target: %w", err)
	}
	return src, dst, nil
}

// dbRun compares one database.
type dbRun struct {
	opts Options
	name string
	emit func(TableResult)
	src  *pgxpool.Pool
	dst  *pgxpool.Pool
	// syncing is set when a subscription replicates into this database.
	syncing bool
	slots   []string

	progressMu   sync.Mutex
	lastProgress time.Time
	chunksDone   int
	chunksTotal  int
}

func (d *dbRun) logf(format string, args ...any) {
	d.opts.Logf("%s: "+format, append([]any{d.name}, args...)...)
}

// run compares the database; hasTarget says whether it exists on the target.
func (d *dbRun) run(ctx context.Context, hasTarget bool) (DatabaseResult, []TableResult, error) {
	dr := DatabaseResult{Name: d.name}
	var err error
	if d.src, err = openPool(ctx, d.opts.Source.WithDatabase(d.name), "source", d.opts.Jobs); err != nil {
		return dr, nil, err
	}
	defer d.src.Close()
	srcTables, err := catalog.ListTables(ctx, d.src)
	if err != nil {
		return dr, nil, fmt.Errorf("source database %s: %w", d.name, err)
	}
	var tables []*tableRun
	for _, st := range srcTables {
		rule := d.opts.Rules.Table(d.name, st.Schema, st.Name)
		if !rule.Include {
			continue
		}
		tables = append(tables, &tableRun{db: d, src: st, rule: rule})
	}

	if !hasTarget {
		dr.MissingOnTarget = true
		d.logf("database missing on the target")
		return dr, d.missingTables(ctx, tables), nil
	}
	if d.dst, err = openPool(ctx, d.opts.Target.WithDatabase(d.name), "target", d.opts.Jobs); err != nil {
		return dr, nil, err
	}
	defer d.dst.Close()
	dstTables, err := catalog.ListTables(ctx, d.dst)
	if err != nil {
		return dr, nil, fmt.Errorf("target database %s: %w", d.name, err)
	}
	onTarget := make(map[[2]string]bool, len(dstTables))
	for _, t := range dstTables {
		onTarget[[2]string{t.Schema, t.Name}] = true
	}

	// Replication: compare at a point the subscriber has confirmed.
	subs, note, err := d.subscriptions(ctx)
	if err != nil {
		return dr, nil, err
	}
	if note != "" {
		dr.Notes = append(dr.Notes, note)
	}
	for _, s := range subs {
		dr.Subscriptions = append(dr.Subscriptions, s.Name)
		d.slots = append(d.slots, s.Slot)
	}
	if len(subs) > 0 {
		if d.opts.CatchupTimeout < 0 {
			dr.Notes = append(dr.Notes, "subscription active but --catchup-timeout disabled waiting: rows written recently may show as different")
		} else {
			d.syncing = true
			lsn, err := d.catchUp(ctx, subs)
			if err != nil {
				return dr, nil, err
			}
			dr.CaughtUpLSN = lsn
		}
	}

	// Plan every table (in parallel), then hash every range (in parallel).
	var missing, planned []*tableRun
	for _, t := range tables {
		if !onTarget[[2]string{t.src.Schema, t.src.Name}] {
			missing = append(missing, t)
			continue
		}
		planned = append(planned, t)
	}
	results := d.missingTables(ctx, missing)
	if err := ctx.Err(); err != nil {
		return dr, nil, err
	}
	if err := d.planAll(ctx, planned); err != nil {
		return dr, nil, err
	}
	var chunks []*chunk
	for _, t := range planned {
		if t.done {
			results = append(results, t.result)
			continue
		}
		chunks = append(chunks, t.chunks...)
	}
	d.chunksTotal = len(chunks)
	d.lastProgress = d.opts.Now()
	if len(chunks) > 0 {
		d.logf("comparing %d tables in %d key ranges with %d jobs", len(planned), len(chunks), d.opts.Jobs)
	}
	if err := d.compareAll(ctx, chunks); err != nil {
		return dr, nil, err
	}
	if d.opts.afterPass != nil {
		d.opts.afterPass(0)
	}

	// While replication runs, ranges that differ may hold in-flight writes:
	// compare them again after another catch-up.
	if d.syncing {
		pending := differing(chunks)
		for round := 1; round <= d.opts.Rechecks && len(pending) > 0; round++ {
			dr.Rechecks = round
			d.logf("%d key range(s) differ; re-checking after catch-up (round %d of %d, writes may be in flight)", len(pending), round, d.opts.Rechecks)
			lsn, err := d.catchUp(ctx, subs)
			if err != nil {
				return dr, nil, err
			}
			dr.CaughtUpLSN = lsn
			for _, c := range pending {
				c.t.budget.Store(int64(d.opts.MaxRanges))
				c.rechecked++
			}
			if err := d.compareAll(ctx, pending); err != nil {
				return dr, nil, err
			}
			if d.opts.afterPass != nil {
				d.opts.afterPass(round)
			}
			still := differing(pending)
			dr.Settled += len(pending) - len(still)
			pending = still
		}
		for _, t := range planned {
			if !t.done {
				t.finish()
				d.emit(t.result)
			}
		}
	}
	for _, t := range planned {
		if len(t.chunks) > 0 {
			results = append(results, t.result)
		}
	}
	return dr, results, nil
}

func differing(chunks []*chunk) []*chunk {
	var out []*chunk
	for _, c := range chunks {
		if c.differs && c.err == nil {
			out = append(out, c)
		}
	}
	return out
}

// missingTables reports tables absent on the target, with their source row
// counts.
func (d *dbRun) missingTables(ctx context.Context, tables []*tableRun) []TableResult {
	var out []TableResult
	for _, t := range tables {
		start := d.opts.Now()
		r := t.base()
		r.Status = StatusMissing
		if !t.rule.SchemaOnly {
			n, err := countRows(ctx, d.src, t.src, t.rule.Predicate)
			if err != nil {
				r.Status = StatusError
				r.Error = "table missing on the target; counting source rows: " + err.Error()
			}
			r.SourceRows = n
		}
		r.Notes = append(r.Notes, "table does not exist on the target")
		r.DurationMS = d.opts.Now().Sub(start).Milliseconds()
		d.emit(r)
		out = append(out, r)
	}
	return out
}

// planAll reads columns, keys and range boundaries of every table.
// Tables that need no hashing (schema-only, errors) are finished here.
func (d *dbRun) planAll(ctx context.Context, tables []*tableRun) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.opts.Jobs)
	for _, t := range tables {
		g.Go(func() error {
			t.start = d.opts.Now()
			err := t.plan(gctx)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if err != nil {
				t.fail(err)
			}
			if t.done {
				d.emit(t.result)
			}
			return nil
		})
	}
	return g.Wait()
}

// compareAll hashes chunks in parallel; a table's result is emitted when
// its last chunk is done (unless it differs and re-checks will follow).
func (d *dbRun) compareAll(ctx context.Context, chunks []*chunk) error {
	for _, c := range chunks {
		c.t.pending.Add(1)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.opts.Jobs)
	for _, c := range chunks {
		g.Go(func() error {
			err := c.compare(gctx)
			if gctx.Err() != nil {
				return gctx.Err()
			}
			c.err = err
			d.progress()
			if c.t.pending.Add(-1) == 0 {
				t := c.t
				if !(d.syncing && t.anyDiffers() && t.rechecks() < d.opts.Rechecks) {
					t.finish()
					d.emit(t.result)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func (d *dbRun) progress() {
	d.progressMu.Lock()
	defer d.progressMu.Unlock()
	d.chunksDone++
	now := d.opts.Now()
	if now.Sub(d.lastProgress) >= d.opts.ProgressEvery && d.chunksDone < d.chunksTotal {
		d.lastProgress = now
		d.logf("%d/%d key ranges compared", d.chunksDone, d.chunksTotal)
	}
}
