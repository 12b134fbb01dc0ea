// Package worker runs one job: it loads the job from the store, marks it
// running (started_at), decrypts its credentials (the only place that
// does), runs the engine command with the job's filter and options,
// streams progress into the job record with its heartbeat and log lines
// tagged [TRACE:<trace_id>] into the job log, enforces the job timeout,
// stops when the job is cancelled or taken from it, and records the
// outcome: completed, failed (with a credential-free message), or timeout.
//
// A worker stopped by a signal (serve shutting down, a lost worker being
// replaced) leaves the job's status alone: the service re-queues it, and
// the next worker resumes from the engine's checkpoint on the target
// (init runs with NoResume=false).
//
// It sees the service's pieces only through their interfaces, so the same
// code runs as a local subprocess and on an EC2 instance.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry"
)

// Defaults for Config.
const (
	DefaultHeartbeatEvery = 5 * time.Second
	DefaultProgressEvery  = time.Second
	DefaultLogFlushEvery  = 500 * time.Millisecond
	DefaultLaunchWait     = 10 * time.Second
	// maxBufferedLines bounds the lines kept while the log store is
	// unreachable; older ones are dropped (they are on stderr too).
	maxBufferedLines = 20000
	flushBatch       = 500
)

// Config wires a worker to the service's pieces.
type Config struct {
	Store  *jobstore.Store // required
	Keeper *secrets.Keeper // required
	Logs   joblog.Log      // required
	// Metrics, when set, records the job's outcome (AWS, where no service
	// process watches jobs end); embedded leaves it nil: serve records it.
	Metrics telemetry.Metrics
	// Engine runs the command (default DefaultEngine).
	Engine Engine
	// WorkerID is recorded on the job (default: the process id).
	WorkerID string
	// DefaultJobTimeout, when set, applies to jobs without
	// options.job_timeout; 0 means by size (jobs.DefaultTimeoutFor).
	DefaultJobTimeout time.Duration
	// Parallel is the engine's number of parallel streams (default: CPUs).
	Parallel int
	// PgBinDir overrides where pg_dump/pg_restore are found.
	PgBinDir string
	// Networks is the policy for the job's connections; nil reads
	// SEREN_ALLOW_NETWORKS (pg.NetPolicyFromEnv).
	Networks *pg.NetPolicy

	HeartbeatEvery time.Duration // heartbeat when nothing else is written
	ProgressEvery  time.Duration // at most one progress write per interval
	LogFlushEvery  time.Duration
	// LaunchWait bounds the wait for the launcher to record this worker
	// on the job before it starts (default 10s).
	LaunchWait time.Duration

	Now    func() time.Time
	Logger *slog.Logger // the worker's own diagnostics (stderr)
	// Echo, when set, also receives every job log line (the worker's
	// stderr, so its output file holds the log even if the store did not).
	Echo io.Writer
}

// Errors Run returns; test with errors.Is.
var (
	// ErrStopped: the worker was stopped (its context ended) before the
	// job ended; the job's status was left for the service.
	ErrStopped = errors.New("worker stopped before the job ended")
	// ErrNotMine: another worker runs (or ran) the job.
	ErrNotMine = errors.New("the job belongs to another worker")
)

// errTimedOut is the cause of the run context's deadline.
var errTimedOut = errors.New("job timeout reached")

// endedElsewhere is the cause when the job stopped being this worker's.
type endedElsewhere struct {
	status jobs.Status
	worker string
}

func (e *endedElsewhere) Error() string {
	if e.status == jobs.StatusRunning || e.status == jobs.StatusProvisioning {
		return fmt.Sprintf("the job was handed to another worker (%s)", e.worker)
	}
	return "the job ended elsewhere as " + string(e.status)
}

// Result is how a run ended.
type Result struct {
	// Status is the job's status when the worker finished with it; empty
	// when the worker was stopped and left the job to the service.
	Status jobs.Status
	// Error is the job's error message (credential-free), if any.
	Error string
}

// Run runs job jobID to its end. The error is non-nil when the worker
// could not run the job at all (not found, store unreachable, stopped);
// a job that ran and failed is Result{Status: failed} with a nil error.
func Run(ctx context.Context, cfg Config, jobID string) (Result, error) {
	if cfg.Store == nil || cfg.Keeper == nil || cfg.Logs == nil {
		return Result{}, errors.New("worker: store, keeper and logs are required")
	}
	if cfg.Engine == nil {
		cfg.Engine = DefaultEngine{}
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID = strconv.Itoa(os.Getpid())
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HeartbeatEvery, DefaultHeartbeatEvery)
	def(&cfg.ProgressEvery, DefaultProgressEvery)
	def(&cfg.LogFlushEvery, DefaultLogFlushEvery)
	def(&cfg.LaunchWait, DefaultLaunchWait)
	if cfg.Parallel < 1 {
		cfg.Parallel = runtime.NumCPU()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("job_id", jobID, "worker_id", cfg.WorkerID)

	j, err := cfg.Store.Get(ctx, jobID)
	if err != nil {
		return Result{}, fmt.Errorf("load job: %w", err)
	}
	log = log.With("trace_id", j.TraceID)
	if j.Status.Terminal() {
		log.Info("job already ended; nothing to do", "status", string(j.Status))
		return Result{Status: j.Status, Error: j.Error}, nil
	}
	if j.Status == jobs.StatusRunning {
		return Result{}, fmt.Errorf("job %s is running on worker %s: %w", j.ID, j.WorkerID, ErrNotMine)
	}
	if j, err = waitLaunchRecorded(ctx, cfg, j); err != nil {
		return Result{}, err
	}
	// The worker holds the job under the launch record it found: its own
	// id and that attempt. Every write it makes is fenced on this lease,
	// so once the service hands the job to another worker (or relaunches
	// it) nothing this worker sends lands on it.
	lease := jobs.Lease{WorkerID: cfg.WorkerID, Attempt: j.Attempts}
	started, err := cfg.Store.Apply(ctx, jobID, jobs.Started(cfg.WorkerID).By(lease))
	if err != nil {
		if started != nil && started.Status.Terminal() {
			log.Info("job ended before it started", "status", string(started.Status))
			return Result{Status: started.Status, Error: started.Error}, nil
		}
		if errors.Is(err, jobs.ErrLeaseLost) {
			return Result{}, fmt.Errorf("start job %s: %v: %w", jobID, err, ErrNotMine)
		}
		return Result{}, fmt.Errorf("start job %s: %w", jobID, err)
	}
	r := newRun(cfg, started, log)
	r.lease = lease
	defer r.logs.close()
	return r.run(ctx)
}

// waitLaunchRecorded waits (up to LaunchWait) until the launcher has
// recorded a worker on the job, so the launch record never races the
// worker's own start.
func waitLaunchRecorded(ctx context.Context, cfg Config, j *jobs.Job) (*jobs.Job, error) {
	deadline := time.Now().Add(cfg.LaunchWait)
	for j.Status == jobs.StatusProvisioning && j.WorkerID == "" && time.Now().Before(deadline) {
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("start job %s: %w", j.ID, ErrStopped)
		case <-t.C:
		}
		cur, err := cfg.Store.Get(ctx, j.ID)
		if err != nil {
			return nil, fmt.Errorf("load job: %w", err)
		}
		j = cur
	}
	return j, nil
}

// run is one worker's execution of a started job.
type run struct {
	cfg   Config
	job   *jobs.Job
	lease jobs.Lease // every write is fenced on it
	log   *slog.Logger
	logs  *lineWriter

	echoMu   sync.Mutex
	mu       sync.Mutex
	progress jobs.Progress
	dirty    bool
	urls     []pg.URL // for redaction, once known
}

func newRun(cfg Config, j *jobs.Job, log *slog.Logger) *run {
	r := &run{cfg: cfg, job: j, log: log}
	r.logs = newLineWriter(cfg.Logs, j.ID, cfg.LogFlushEvery, cfg.Now, log)
	return r
}

func (r *run) timeout() time.Duration {
	if r.job.Spec.Options.JobTimeout > 0 {
		return time.Duration(r.job.Spec.Options.JobTimeout) * time.Second
	}
	if r.cfg.DefaultJobTimeout > 0 {
		return r.cfg.DefaultJobTimeout
	}
	return r.job.Timeout()
}

func (r *run) run(ctx context.Context) (Result, error) {
	j := r.job
	r.Logf("worker %s started %s job %s (attempt %d)", r.cfg.WorkerID, j.Spec.Command, j.ID, max(1, j.Attempts))
	r.log.Info("job started", "command", string(j.Spec.Command), "attempt", j.Attempts)

	opts, err := r.engineOptions(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// Stopped from outside before the engine began (a shutdown or
			// a cancel): not the job's failure; the service decides.
			r.Logf("worker stopped before the job began")
			r.logs.flush()
			return Result{}, fmt.Errorf("job %s: %w", j.ID, ErrStopped)
		}
		return r.finish(ctx, jobs.Failed(r.message(err)))
	}
	limit := r.timeout()
	deadline := r.cfg.Now().Add(limit)
	if j.StartedAt != nil {
		deadline = j.StartedAt.Add(limit) // a resumed job keeps its first start's deadline
	}
	runCtx, cancelRun := context.WithDeadlineCause(ctx, deadline, errTimedOut)
	defer cancelRun()
	watchCtx, cancelWatch := context.WithCancelCause(runCtx)
	defer cancelWatch(nil)

	hbDone := make(chan struct{})
	hbCtx, stopHB := context.WithCancel(watchCtx)
	go func() {
		defer close(hbDone)
		r.heartbeatLoop(hbCtx, cancelWatch)
	}()
	err = r.cfg.Engine.Run(watchCtx, j.Spec.Command, opts, r)
	stopHB()
	<-hbDone

	cause := context.Cause(watchCtx)
	var ended *endedElsewhere
	switch {
	case errors.As(cause, &ended):
		r.Logf("worker stopping: %v", ended)
		r.log.Info("job taken from this worker", "reason", ended.Error())
		r.logs.flush()
		if ended.status.Terminal() {
			return Result{Status: ended.status}, nil
		}
		return Result{}, fmt.Errorf("job %s: %v: %w", j.ID, ended, ErrNotMine)
	case err == nil:
		r.Logf("job completed")
		return r.finish(ctx, jobs.Completed(r.snapshot()))
	case errors.Is(cause, errTimedOut):
		r.Logf("job exceeded its timeout of %s; stopped", limit)
		return r.finish(ctx, jobs.TimedOut(limit))
	case ctx.Err() != nil:
		// Stopped from outside: by a cancel or the service's timeout (the
		// job has ended already), or for a shutdown (the service re-queues it).
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		cur, gerr := r.cfg.Store.Get(gctx, j.ID)
		cancel()
		if gerr == nil && cur.Status.Terminal() {
			r.Logf("worker stopped: the job ended as %s", cur.Status)
			r.logs.flush()
			return Result{Status: cur.Status, Error: cur.Error}, nil
		}
		r.Logf("worker stopped before the job ended; the service resumes it from its checkpoint")
		r.log.Warn("worker stopped; job left to the service")
		r.logs.flush()
		return Result{}, fmt.Errorf("job %s: %w", j.ID, ErrStopped)
	default:
		var hidden *pg.HiddenError
		if errors.As(err, &hidden) {
			// The submitter sees the plain message; the service log keeps why.
			r.log.Warn("connection failed", "detail", r.redact(hidden.Detail))
		}
		msg := r.message(err)
		r.Logf("job failed: %s", msg)
		return r.finish(ctx, jobs.Failed(msg))
	}
}

// engineOptions decrypts the credentials and builds the engine's options.
func (r *run) engineOptions(ctx context.Context) (replicator.Options, error) {
	j := r.job
	creds, err := r.cfg.Keeper.OpenCredentials(ctx, j.ID, j.Credentials)
	if err != nil {
		return replicator.Options{}, fmt.Errorf("decrypt the job's credentials: %w", err)
	}
	// A job's URLs are untrusted: every connection made from them obeys
	// the operator's network policy (see pg.ParseUntrusted).
	policy := r.cfg.Networks
	if policy == nil {
		if policy, err = pg.NetPolicyFromEnv(); err != nil {
			return replicator.Options{}, err
		}
	}
	src, err := pg.ParseUntrusted(creds.SourceURL, policy)
	if err != nil {
		return replicator.Options{}, fmt.Errorf("source_url: %w", err)
	}
	dst, err := pg.ParseUntrusted(creds.TargetURL, policy)
	if err != nil {
		return replicator.Options{}, fmt.Errorf("target_url: %w", err)
	}
	r.mu.Lock()
	r.urls = []pg.URL{src, dst}
	r.mu.Unlock()
	f := j.Spec.Filter
	rules, err := selection.Build(selection.Flags{
		IncludeDatabases: f.IncludeDatabases, ExcludeDatabases: f.ExcludeDatabases,
		IncludeTables: f.IncludeTables, ExcludeTables: f.ExcludeTables,
		SchemaOnlyTables: f.SchemaOnlyTables, TableFilters: f.TableFilters, TimeFilters: f.TimeFilters,
	})
	if err != nil {
		return replicator.Options{}, fmt.Errorf("filter: %w", err)
	}
	r.Logf("%s from %s to %s (sync afterwards: %v, drop existing: %v)", j.Spec.Command, src, dst,
		j.Spec.Options.SyncEnabled(), j.Spec.Options.DropExisting)
	return replicator.Options{
		Source: src, Target: dst, Rules: rules, Jobs: r.cfg.Parallel,
		DropExisting: j.Spec.Options.DropExisting,
		NoSync:       !j.Spec.Options.SyncEnabled(),
		// A retried job resumes from the checkpoint its earlier worker
		// left on the target.
		NoResume: false,
		PgBinDir: r.cfg.PgBinDir,
	}, nil
}

// finish flushes the log and records the final transition.
func (r *run) finish(ctx context.Context, t jobs.Transition) (Result, error) {
	r.logs.flush()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	done, err := r.cfg.Store.Apply(wctx, r.job.ID, t.By(r.lease))
	if err != nil {
		if done != nil && done.Status.Terminal() {
			// Someone else ended it first (cancel, scheduler timeout).
			r.log.Info("job already ended", "status", string(done.Status), "wanted", string(t.To))
			return Result{Status: done.Status, Error: done.Error}, nil
		}
		if done != nil && errors.Is(err, jobs.ErrConflict) {
			// The job was handed to another worker: this worker's outcome
			// is not the job's.
			ended := &endedElsewhere{status: done.Status, worker: done.WorkerID}
			r.Logf("worker %s: its result (%s) was not recorded: %v", r.cfg.WorkerID, t.To, ended)
			r.log.Warn("job taken from this worker before it ended", "wanted", string(t.To), "reason", ended.Error())
			r.logs.flush()
			return Result{}, fmt.Errorf("job %s: %v: %w", r.job.ID, ended, ErrNotMine)
		}
		return Result{}, fmt.Errorf("record job %s as %s: %w", r.job.ID, t.To, err)
	}
	r.log.Info("job finished", "status", string(done.Status), "error", done.Error)
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.JobFinished(string(done.Spec.Command), string(done.Status), jobDuration(done))
	}
	return Result{Status: done.Status, Error: done.Error}, nil
}

func jobDuration(j *jobs.Job) time.Duration {
	if j.CompletedAt == nil {
		return 0
	}
	return j.CompletedAt.Sub(j.CreatedAt)
}

// message is err as the job's error: with its hint, passwords redacted.
func (r *run) message(err error) string {
	msg := err.Error()
	if h := hint.Of(err); h != "" {
		msg += ". Try: " + h
	}
	return r.redact(msg)
}

func (r *run) redact(s string) string {
	r.mu.Lock()
	urls := r.urls
	r.mu.Unlock()
	return pg.Redact(s, urls...)
}

// heartbeatLoop writes progress (at most every ProgressEvery) and a
// heartbeat (at least every HeartbeatEvery), and ends the run when the job
// is no longer this worker's (cancelled, timed out by the service, handed
// to another worker).
func (r *run) heartbeatLoop(ctx context.Context, end context.CancelCauseFunc) {
	t := time.NewTicker(r.cfg.ProgressEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		dirty := r.dirty
		r.mu.Unlock()
		if !dirty && time.Since(last) < r.cfg.HeartbeatEvery {
			continue
		}
		p := r.snapshot()
		r.mu.Lock()
		r.dirty = false
		r.mu.Unlock()
		cur, err := r.cfg.Store.Apply(ctx, r.job.ID, jobs.Heartbeat(p).By(r.lease))
		switch {
		case err == nil:
			last = time.Now()
		case cur != nil:
			end(&endedElsewhere{status: cur.Status, worker: cur.WorkerID})
			return
		case ctx.Err() != nil:
			return
		default:
			// A busy or briefly unreachable store: keep working; the
			// service only gives up on the worker after its heartbeat
			// timeout.
			r.log.Warn("heartbeat failed", "err", err)
			r.mu.Lock()
			r.dirty = true
			r.mu.Unlock()
		}
	}
}

func (r *run) snapshot() *jobs.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress
	return &p
}

// Progress implements replicator.Reporter.
func (r *run) Progress(p replicator.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = jobs.Progress{
		Phase: p.Phase, CurrentDatabase: p.CurrentDatabase,
		DatabasesCompleted: p.DatabasesCompleted, DatabasesTotal: p.DatabasesTotal,
		CurrentTable: p.CurrentTable, TablesCompleted: p.TablesCompleted, TablesTotal: p.TablesTotal,
		BytesCopied: p.BytesCopied, BytesTotal: p.BytesTotal,
	}
	r.dirty = true
}

// Logf implements replicator.Reporter: one log line per text line, tagged
// with the trace id, passwords redacted.
func (r *run) Logf(format string, args ...any) {
	text := r.redact(fmt.Sprintf(format, args...))
	now := r.cfg.Now()
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		line = "[TRACE:" + r.job.TraceID + "] " + line
		if r.cfg.Echo != nil {
			r.echoMu.Lock()
			fmt.Fprintln(r.cfg.Echo, now.UTC().Format(time.RFC3339Nano)+" "+line)
			r.echoMu.Unlock()
		}
		r.logs.add(joblog.Line{Time: now, Text: line})
	}
}

// lineWriter batches log lines into the job log.
type lineWriter struct {
	logs  joblog.Log
	jobID string
	log   *slog.Logger

	mu      sync.Mutex
	pending []joblog.Line
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	flushMu sync.Mutex
}

func newLineWriter(logs joblog.Log, jobID string, every time.Duration, now func() time.Time, log *slog.Logger) *lineWriter {
	w := &lineWriter{logs: logs, jobID: jobID, log: log,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			case <-w.kick:
			}
			w.flush()
		}
	}()
	return w
}

func (w *lineWriter) add(l joblog.Line) {
	w.mu.Lock()
	w.pending = append(w.pending, l)
	if over := len(w.pending) - maxBufferedLines; over > 0 {
		w.pending = w.pending[over:]
	}
	n := len(w.pending)
	w.mu.Unlock()
	if n >= flushBatch {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// flush writes the pending lines; on failure they stay for the next try.
func (w *lineWriter) flush() {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	for {
		w.mu.Lock()
		batch := w.pending[:min(len(w.pending), flushBatch)]
		w.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := w.logs.Append(ctx, w.jobID, batch)
		cancel()
		if err != nil {
			w.log.Warn("write job log", "err", err, "pending", len(batch))
			return
		}
		w.mu.Lock()
		w.pending = w.pending[len(batch):]
		w.mu.Unlock()
	}
}

func (w *lineWriter) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.flush()
}
