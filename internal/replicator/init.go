package replicator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/catalog"
	"github.com/serenorg/postgres-seren-replicator/internal/copier"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/pgtools"
	"github.com/serenorg/postgres-seren-replicator/internal/schema"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// Phase is one timed step of a run, for the final summary.
type Phase struct {
	Database string
	Name     string
	Duration time.Duration
	Detail   string
}

// InitSummary describes a finished init.
type InitSummary struct {
	Databases []string
	Tables    int
	Skipped   int // tables finished by an earlier run
	Bytes     int64
	Phases    []Phase
	Warnings  []string
	Duration  time.Duration
	// Remaining are the selected databases not finished when the run
	// stopped (the one being copied included): what a re-run has to do.
	Remaining []string
	// Streaming are databases skipped because an earlier run finished them
	// and their continuous sync to this target is set up.
	Streaming []string
}

// session holds the admin connections of a run.
type session struct {
	opts       Options
	rep        Reporter
	src, dst   *pgx.Conn
	srcVersion int
	dstVersion int
	tools      pgtools.Tools
}

func open(ctx context.Context, opts Options, rep Reporter) (*session, error) {
	s := &session{opts: opts, rep: rep}
	srcAdmin := opts.Source
	if srcAdmin.Database() == "" {
		srcAdmin = srcAdmin.WithDatabase("postgres")
	}
	dstAdmin := opts.Target
	if dstAdmin.Database() == "" {
		dstAdmin = dstAdmin.WithDatabase("postgres")
	}
	var err error
	if s.src, err = pg.Connect(ctx, srcAdmin, "source"); err != nil {
		return nil, err
	}
	if s.dst, err = pg.Connect(ctx, dstAdmin, "target"); err != nil {
		s.close()
		return nil, err
	}
	// Before anything is created or dropped: the target must not be the
	// source under another name (another database, localhost for 127.0.0.1).
	if err := pg.RefuseSameServer(ctx, s.src, s.dst, srcAdmin, dstAdmin); err != nil {
		s.close()
		return nil, err
	}
	if s.srcVersion, err = pg.ServerVersion(ctx, s.src); err != nil {
		s.close()
		return nil, fmt.Errorf("source: %w", err)
	}
	if s.dstVersion, err = pg.ServerVersion(ctx, s.dst); err != nil {
		s.close()
		return nil, fmt.Errorf("target: %w", err)
	}
	for _, c := range []struct {
		v    int
		role string
	}{{s.srcVersion, "source"}, {s.dstVersion, "target"}} {
		if err := pg.CheckVersion(c.v, c.role); err != nil {
			s.close()
			return nil, err
		}
	}
	if s.dstVersion/10000 < s.srcVersion/10000 {
		s.close()
		return nil, hint.Wrap(fmt.Errorf("target is PostgreSQL %d, older than the source (%d): a newer server's schema cannot be restored into an older one", s.dstVersion/10000, s.srcVersion/10000),
			fmt.Sprintf("use a target running PostgreSQL %d or newer", s.srcVersion/10000))
	}
	return s, nil
}

func (s *session) close() {
	if s.src != nil {
		s.src.Close(context.Background())
	}
	if s.dst != nil {
		s.dst.Close(context.Background())
	}
}

// DatabaseEstimate is one database's planned copy.
type DatabaseEstimate struct {
	Name      string
	SizeBytes int64
	Tables    int
}

// Estimate lists the selected databases with sizes, for the confirmation
// prompt and the remote job's estimated_size_bytes.
func Estimate(ctx context.Context, opts Options) ([]DatabaseEstimate, error) {
	srcAdmin := opts.Source
	if srcAdmin.Database() == "" {
		srcAdmin = srcAdmin.WithDatabase("postgres")
	}
	src, err := pg.Connect(ctx, srcAdmin, "source")
	if err != nil {
		return nil, err
	}
	defer src.Close(ctx)
	dbs, err := selectedDatabases(ctx, src, opts, nil)
	if err != nil {
		return nil, err
	}
	out := make([]DatabaseEstimate, 0, len(dbs))
	for _, d := range dbs {
		out = append(out, DatabaseEstimate{Name: d.Name, SizeBytes: d.SizeBytes})
	}
	return out, nil
}

// selectedDatabases lists the source databases the rules select; note, if
// not nil, hears why the postgres database was left out.
func selectedDatabases(ctx context.Context, src *pgx.Conn, opts Options, note func(string)) ([]catalog.Database, error) {
	all, err := catalog.ListDatabases(ctx, src, nil)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var out []catalog.Database
	var names []string
	leftOut := false
	for _, d := range all {
		names = append(names, d.Name)
		if opts.Rules.Database(d.Name) {
			out = append(out, d)
		} else if opts.Rules.DatabaseReason(d.Name) == selection.PostgresLeftOut {
			leftOut = true
		}
	}
	if len(out) == 0 {
		return nil, hint.Wrap(errors.New("no source database matches the selection"),
			fmt.Sprintf("the source has: %v; check --include-databases/--exclude-databases", names))
	}
	if leftOut && note != nil {
		note(selection.PostgresLeftOut)
	}
	return out, nil
}

// Init copies roles, then each selected database: schema, data at one
// snapshot, indexes and constraints, sequences, large objects, ANALYZE;
// then (unless NoSync) starts continuous sync from the snapshot's position.
func Init(ctx context.Context, opts Options, rep Reporter) (*InitSummary, error) {
	start := time.Now()
	if rep == nil {
		rep = Discard{}
	}
	if opts.Jobs < 1 {
		opts.Jobs = runtime.NumCPU()
	}
	s, err := open(ctx, opts, rep)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if s.tools, err = pgtools.Find(ctx, opts.PgBinDir, s.srcVersion/10000); err != nil {
		return nil, err
	}
	dbs, err := selectedDatabases(ctx, s.src, opts, func(n string) { rep.Logf("note: %s", n) })
	if err != nil {
		return nil, err
	}
	sum := &InitSummary{}
	warn := func(w string) {
		sum.Warnings = append(sum.Warnings, w)
		rep.Logf("warning: %s", w)
	}

	// Everything that would make the run fail or lose data, up front.
	tv := time.Now()
	rep.Progress(Progress{Phase: "validate", DatabasesTotal: len(dbs)})
	problems, err := logical.Validate(ctx, logical.ValidateOptions{Source: opts.Source, Target: opts.Target, Rules: opts.Rules, NoSync: opts.NoSync, DropExisting: opts.DropExisting})
	if err != nil {
		return nil, err
	}
	if err := blockers(problems, warn); err != nil {
		return sum, err
	}
	sum.Phases = append(sum.Phases, Phase{Name: "validate", Duration: time.Since(tv), Detail: fmt.Sprintf("%d warnings", len(problems))})

	t0 := time.Now()
	rep.Progress(Progress{Phase: "roles", DatabasesTotal: len(dbs)})
	roles, err := schema.CopyRoles(ctx, s.src, s.dst)
	if err != nil {
		return nil, err
	}
	for _, w := range roles.Warnings {
		warn(w)
	}
	sum.Phases = append(sum.Phases, Phase{Name: "roles", Duration: time.Since(t0),
		Detail: fmt.Sprintf("%d created, %d already there", len(roles.Created), len(roles.Existing))})
	rep.Logf("roles: %d created, %d already on the target", len(roles.Created), len(roles.Existing))

	for i, db := range dbs {
		sum.Remaining = nil
		for _, d := range dbs[i:] {
			sum.Remaining = append(sum.Remaining, d.Name)
		}
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if sub, err := s.streaming(ctx, db.Name); err != nil {
			return sum, fmt.Errorf("database %s: %w", db.Name, err)
		} else if sub != "" {
			rep.Logf("database %s: already copied by an earlier run and streaming to this target (subscription %s): skipped", db.Name, sub)
			sum.Streaming = append(sum.Streaming, db.Name)
			continue
		}
		rep.Progress(Progress{Phase: "schema", CurrentDatabase: db.Name, DatabasesCompleted: i, DatabasesTotal: len(dbs)})
		if err := s.initDatabase(ctx, db, i, len(dbs), sum, warn); err != nil {
			return sum, fmt.Errorf("database %s: %w", db.Name, err)
		}
		sum.Databases = append(sum.Databases, db.Name)
	}
	sum.Remaining = nil
	rep.Progress(Progress{Phase: "done", DatabasesCompleted: len(dbs), DatabasesTotal: len(dbs),
		TablesCompleted: sum.Tables, TablesTotal: sum.Tables, BytesCopied: sum.Bytes, BytesTotal: sum.Bytes})
	sum.Duration = time.Since(start)
	return sum, nil
}

func (s *session) initDatabase(ctx context.Context, db catalog.Database, idx, nDBs int, sum *InitSummary, warn func(string)) error {
	opts, rep := s.opts, s.rep
	srcURL := opts.Source.WithDatabase(db.Name)
	dstURL := opts.Target.WithDatabase(db.Name)
	phase := func(name string, t time.Time, detail string) {
		sum.Phases = append(sum.Phases, Phase{Database: db.Name, Name: name, Duration: time.Since(t), Detail: detail})
	}

	t0 := time.Now()
	state, err := schema.PrepareDatabase(ctx, s.dst, opts.Target, db, opts.DropExisting, opts.NoResume, warn)
	if err != nil {
		return err
	}
	// With sync, a resumed copy cannot be combined with a new slot: the
	// interrupted run's snapshot is gone, so rows copied at it and changes
	// streamed from a new slot's position would overlap or leave a gap.
	if state == schema.Resuming && !opts.NoSync {
		warn(fmt.Sprintf("database %s: the interrupted run's snapshot is gone and continuous sync must start exactly where the copy was taken, so the database is copied again from the start (use --no-sync to resume table by table)", db.Name))
		if err := schema.RecreateDatabase(ctx, s.dst, opts.Target, db, warn); err != nil {
			return err
		}
		state = schema.Created
	}

	src, err := pg.Connect(ctx, srcURL, "source")
	if err != nil {
		return err
	}
	defer src.Close(context.Background())
	dst, err := pg.Connect(ctx, dstURL, "target")
	if err != nil {
		return err
	}
	defer dst.Close(context.Background())
	for _, c := range []*pgx.Conn{src, dst} {
		if _, err := c.Exec(ctx, copier.SessionSettings); err != nil {
			return fmt.Errorf("configure session: %w", err)
		}
	}

	plan, err := planTables(ctx, src, db.Name, opts)
	if err != nil {
		return err
	}

	// One snapshot for everything read from the source below: with sync,
	// the logical slot's own snapshot, so replication starts exactly where
	// the copy ends.
	var snap *snapshot
	var slot *logical.Slot
	var names logical.ObjectNames
	if !opts.NoSync {
		// The set belongs to this (source database, target) pair: another
		// target's set of the same database has other names and is never
		// touched here.
		tid, err := logical.TargetID(ctx, dst)
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		names = logical.PairNames(db.Name, tid)
	}
	if opts.NoSync {
		if snap, err = exportSnapshot(ctx, srcURL); err != nil {
			return err
		}
	} else {
		tSlot := time.Now()
		if slot, err = s.createSlot(ctx, src, srcURL, db.Name, names); err != nil {
			return err
		}
		// Until the subscription owns it, a failure must not leave the slot
		// retaining WAL on the source.
		defer func() {
			if slot != nil {
				if derr := slot.Drop(ctx); derr != nil {
					warn(fmt.Sprintf("database %s: could not drop slot %s after the failure: %v; drop it on the source: SELECT pg_drop_replication_slot('%s')", db.Name, names.Slot, derr, names.Slot))
				} else {
					rep.Logf("database %s: dropped slot %s after the failure", db.Name, names.Slot)
				}
				_ = logical.DropPublication(context.WithoutCancel(ctx), src, names.Publication)
			}
		}()
		cur := slot
		if snap, err = importSnapshot(ctx, srcURL, slot.SnapshotName(), func() { _ = cur.Close(context.Background()) }); err != nil {
			return err
		}
		phase("slot", tSlot, fmt.Sprintf("%s at %s", names.Slot, slot.ConsistentLSN()))
	}
	defer snap.release()
	rep.Logf("database %s: copying at snapshot %s (%d tables, %s)", db.Name, snap.name, len(plan.copy), humanBytes(db.SizeBytes))

	workDir, err := os.MkdirTemp("", "seren-replicator-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(workDir)
	d := &schema.Dumper{Tools: s.tools, Source: srcURL, Target: dstURL, Snapshot: snap.name, ExcludeTables: plan.exclude, WorkDir: workDir}
	if state == schema.Created {
		if err := d.PreData(ctx); err != nil {
			return err
		}
		if err := copier.SetState(ctx, dst, "stage", "data"); err != nil {
			return err
		}
	} else {
		rep.Logf("database %s: resuming an interrupted copy (schema already in place)", db.Name)
	}
	post, err := d.PreparePostData(ctx, src, tablesOf(plan.copy))
	if err != nil {
		return err
	}
	defer post.Close()
	phase("schema", t0, "pre-data")

	t1 := time.Now()
	done, err := copier.DoneItems(ctx, dst)
	if err != nil {
		return err
	}
	var totalBytes int64
	for _, t := range plan.copy {
		totalBytes += t.Table.SizeBytes
	}
	var mu sync.Mutex
	var copied int64
	var tablesDone int
	stats, err := copier.Run(ctx, copier.Config{
		Source: srcURL, Target: dstURL, Snapshot: snap.name, Jobs: opts.Jobs, Tasks: plan.copy,
		SourceVersion: s.srcVersion, Done: done, RangeBytes: splitBytes(opts, totalBytes),
		Steps: func(t catalog.Table) []copier.Step {
			var out []copier.Step
			for _, s := range post.Steps(t) {
				out = append(out, s)
			}
			return out
		},
		Finish: func(ctx context.Context, conn *pgx.Conn, t catalog.Table) error {
			if _, err := conn.Exec(ctx, "ANALYZE "+t.QualifiedName()); err != nil {
				return fmt.Errorf("analyze %s: %w", t, err)
			}
			return nil
		},
		OnProgress: func(e copier.Event) {
			mu.Lock()
			copied += e.Bytes
			if e.Done {
				tablesDone = e.TablesDone
				if e.Skipped {
					copied += e.Table.SizeBytes
				}
			}
			p := Progress{Phase: "copy", CurrentDatabase: db.Name, DatabasesCompleted: idx, DatabasesTotal: nDBs,
				CurrentTable: e.Table.String(), TablesCompleted: tablesDone, TablesTotal: e.TablesTotal,
				BytesCopied: copied, BytesTotal: totalBytes}
			mu.Unlock()
			rep.Progress(p)
			if e.Done && !e.Skipped {
				rep.Logf("database %s: table %s done (%d/%d)", db.Name, e.Table, e.TablesDone, e.TablesTotal)
			}
		},
	})
	if err != nil {
		return err
	}
	sum.Tables += stats.Tables
	sum.Skipped += stats.TablesSkipped
	sum.Bytes += stats.Bytes
	phase("data+indexes", t1, fmt.Sprintf("%d tables, %s streamed", stats.Tables, humanBytes(stats.Bytes)))

	t2 := time.Now()
	seqs, err := schema.ReadSequences(ctx, snap.conn)
	if err != nil {
		return err
	}
	nSeq, err := schema.SetSequences(ctx, dst, seqs)
	if err != nil {
		return err
	}
	// Large objects: their definitions came with pre-data, their content
	// is written here (writing it again, after a kill before the record,
	// rewrites the same bytes); recorded so a re-run skips it.
	var nLO int64
	if loDone, err := copier.State(ctx, dst, "large_objects"); err != nil {
		return err
	} else if loDone == "" {
		if nLO, err = d.LargeObjects(ctx, src); err != nil {
			return err
		}
		if err := copier.SetState(ctx, dst, "large_objects", strconv.FormatInt(nLO, 10)); err != nil {
			return err
		}
		copier.Boundary()
	}
	snap.release()
	phase("sequences+large objects", t2, fmt.Sprintf("%d sequences, %d large objects", nSeq, nLO))

	t3 := time.Now()
	if err := post.Rest(ctx, dst, opts.Jobs); err != nil {
		return err
	}
	copier.Boundary()
	// Database settings last: one such as default_transaction_read_only
	// would otherwise apply to the sessions that load the data.
	if err := schema.CopyDatabaseSettings(ctx, s.src, s.dst, db.Name, warn); err != nil {
		return err
	}
	copier.Boundary()
	phase("post-data", t3, "constraints, triggers, views refreshed, database settings")

	if err := copier.DropCheckpoint(ctx, dst); err != nil {
		return err
	}
	if slot != nil {
		t4 := time.Now()
		if err := logical.CreateSubscription(ctx, dst, names.Subscription, srcURL, names.Publication, names.Slot, opts.Subscription); err != nil {
			return err
		}
		slot = nil // the subscription owns it now
		if err := logical.RecordPair(ctx, src, dst, names, db.Name, true); err != nil {
			warn(fmt.Sprintf("database %s: %v", db.Name, err))
		}
		phase("subscription", t4, names.Subscription+" streaming from "+names.Slot)
		rep.Logf("database %s: continuous sync started (subscription %s)", db.Name, names.Subscription)
	}
	rep.Logf("database %s: done (%d tables, %s) in %s", db.Name, stats.Tables, humanBytes(stats.Bytes), time.Since(t0).Round(time.Millisecond))
	return nil
}

// streaming returns the name of this pair's subscription when database db
// on the target was finished by an earlier run of ours and set up for
// continuous sync (a finished copy holds no checkpoint), "" otherwise.
func (s *session) streaming(ctx context.Context, db string) (string, error) {
	if s.opts.NoSync || s.opts.DropExisting {
		return "", nil
	}
	dst, err := logical.ConnectIfExists(ctx, s.opts.Target.WithDatabase(db), "target")
	if err != nil || dst == nil {
		return "", err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	if ours, err := copier.HasCheckpoint(ctx, dst); err != nil || ours {
		return "", err
	}
	tid, err := logical.TargetID(ctx, dst)
	if err != nil {
		return "", fmt.Errorf("target: %w", err)
	}
	n, err := logical.NamesFor(ctx, tid, dst, db)
	if err != nil {
		return "", err
	}
	sub, err := logical.GetSubscription(ctx, dst, n.Subscription)
	if err != nil || sub == nil {
		return "", err
	}
	return n.Subscription, nil
}

// createSlot creates the publication and then the slot (in that order: see
// internal/logical). A slot of ours left by a killed run is dropped first:
// its snapshot is gone and it only retains WAL.
func (s *session) createSlot(ctx context.Context, src *pgx.Conn, srcURL pg.URL, db string, names logical.ObjectNames) (*logical.Slot, error) {
	specs, err := logical.PublicationTables(ctx, src, db, s.opts.Rules)
	if err != nil {
		return nil, err
	}
	if err := logical.CreatePublication(ctx, src, names.Publication, specs); err != nil {
		if !errors.Is(err, logical.ErrConflict) {
			return nil, err
		}
		if err := logical.DropPublication(ctx, src, names.Publication); err != nil {
			return nil, err
		}
		if err := logical.CreatePublication(ctx, src, names.Publication, specs); err != nil {
			return nil, err
		}
	}
	if err := logical.RecordPair(ctx, src, s.dst, names, db, false); err != nil {
		return nil, err
	}
	slot, err := logical.CreateSlot(ctx, srcURL, names.Slot)
	if errors.Is(err, logical.ErrExists) {
		// The name is this pair's, so the slot is ours for this target;
		// still, never take it from a WAL sender that is using it.
		info, gerr := logical.GetSlot(ctx, src, names.Slot)
		if gerr != nil {
			return nil, gerr
		}
		if info != nil && info.Active {
			return nil, hint.Wrap(fmt.Errorf("slot %s of this source database and target is in use (WAL sender pid %d): %w", names.Slot, info.ActivePID, logical.ErrExists),
				"another run or a subscription is streaming from it; see `status`, and stop that first")
		}
		s.rep.Logf("database %s: dropping slot %s left by an interrupted run", db, names.Slot)
		if err := logical.DropSlot(ctx, src, names.Slot); err != nil {
			return nil, err
		}
		slot, err = logical.CreateSlot(ctx, srcURL, names.Slot)
	}
	if err != nil {
		return nil, err
	}
	return slot, nil
}

// splitBytes is the size above which a table is split into block ranges
// copied in parallel: the user's choice, or else only tables that are both
// big (over 1 GiB) and larger than an even share of the database per
// stream. Splitting costs COPY FREEZE (ranges cannot truncate the table in
// their own transaction) and a plain COPY of the whole table; on the 2-core
// machine of scripts/bench.sh a 0.8 GB dominant table copied 14% faster in
// one stream than in 90 MB ranges.
func splitBytes(opts Options, total int64) int64 {
	if opts.SplitBytes > 0 {
		return opts.SplitBytes
	}
	return max(total/int64(max(opts.Jobs, 1)), 1<<30)
}

// blockers passes warnings on and turns blocking problems into one error
// listing each with its fix.
func blockers(problems []logical.Problem, warn func(string)) error {
	var lines []string
	for _, p := range problems {
		where := p.Server
		if p.Database != "" {
			where += " database " + p.Database
		}
		if p.Severity != logical.Blocker {
			warn(fmt.Sprintf("%s: %s (fix: %s)", where, p.Message, p.Fix))
			continue
		}
		lines = append(lines, fmt.Sprintf("  - %s: %s\n    fix: %s", where, p.Message, p.Fix))
	}
	if len(lines) == 0 {
		return nil
	}
	return hint.Wrap(fmt.Errorf("%d problem(s) must be fixed before init can run:\n%s", len(lines), strings.Join(lines, "\n")),
		"apply the fixes above, then check with `postgres-seren-replicator validate`")
}
