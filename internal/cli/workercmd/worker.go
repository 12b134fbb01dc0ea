// Package workercmd implements `worker`: run one job of the job service by
// id. `serve` starts it as a subprocess (embedded backend); on AWS the
// worker instance runs the same command with SEREN_BACKEND=aws. Users do
// not normally run it by hand.
package workercmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/worker"
)

// Exit codes of `worker` (clio): 0 completed, 1 failed or could not run,
// 124 ran past its timeout, 130 cancelled or stopped (the service
// re-queues the job).

// Options are the parsed flags of `worker`.
type Options struct {
	IO             *iostreams.IOStreams
	JobID          string
	DataDir        string
	DefaultTimeout time.Duration
	PgBinDir       string
	Parallel       int

	// Tuning for tests (hidden flags).
	HeartbeatEvery time.Duration
}

// New returns the worker command.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:    "worker --job-id ID",
		Hidden: true, // started by serve and AWS workers, not by people
		Short:  "Run one job of the job service (started by serve, or on an AWS worker instance)",
		Long: `worker runs one job of the job service: it loads the job, marks it running,
decrypts its credentials, runs the command with the job's filter and options,
writes progress and log lines into the service's store, and records the outcome.

serve starts one worker per job; on AWS each worker instance runs it with
SEREN_BACKEND=aws and terminates its own instance when it is done. A job retried after its worker was lost resumes from the
checkpoint the earlier worker left on the target.

Exit status: 0 completed, 1 failed, 124 timeout, 130 cancelled or stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.JobID, "job-id", "", "id of the job to run (required)")
	f.StringVar(&opts.DataDir, "data-dir", "", "the embedded service's data directory (default $"+backends.EnvDataDir+" or "+backends.DefaultDataDir()+")")
	clio.DurationVar(f, &opts.DefaultTimeout, "default-timeout", jobs.DefaultJobTimeout, "timeout of jobs that set no job_timeout")
	f.StringVar(&opts.PgBinDir, "pg-bin-dir", "", "directory holding pg_dump/pg_restore (default: newest found)")
	f.IntVar(&opts.Parallel, "jobs", cmdutil.DefaultJobs(), "parallel COPY streams and index builds")
	clio.DurationVar(f, &opts.HeartbeatEvery, "heartbeat-every", worker.DefaultHeartbeatEvery, "heartbeat interval")
	_ = f.MarkHidden("heartbeat-every")
	return cmd
}

func run(ctx context.Context, opts *Options) error {
	if opts.JobID == "" {
		return clio.Usage(errors.New("--job-id is required"))
	}
	log := slog.New(slog.NewTextHandler(opts.IO.ErrOut, nil)).With("component", "worker")
	bcfg := backends.FromEnv(backends.Config{DataDir: opts.DataDir, Logger: log})
	parts := backends.ForWorker
	if bcfg.Backend == backends.AWS {
		// No serve process watches jobs end on AWS: the worker records
		// its job's outcome metrics itself.
		parts |= backends.PartMetrics
	}
	set, err := backends.Open(ctx, bcfg, parts)
	if err != nil {
		return err
	}
	defer set.Close()
	workerID := ""
	if set.Self != nil {
		workerID = set.Self.InstanceID
		// One job per instance: whatever the outcome, the instance ends
		// with it (after the metrics are sent).
		defer terminateSelf(ctx, set, log)
	}
	res, err := worker.Run(ctx, worker.Config{
		Store:             set.Store,
		Keeper:            set.Keeper,
		Logs:              set.Logs,
		Metrics:           set.Metrics,
		WorkerID:          workerID,
		DefaultJobTimeout: opts.DefaultTimeout,
		Parallel:          opts.Parallel,
		PgBinDir:          opts.PgBinDir,
		HeartbeatEvery:    opts.HeartbeatEvery,
		Logger:            log,
		Echo:              opts.IO.ErrOut,
	}, opts.JobID)
	if err != nil {
		if errors.Is(err, worker.ErrStopped) || errors.Is(err, worker.ErrNotMine) {
			return &clio.ExitError{Code: clio.ExitCanceled, Err: err}
		}
		return err
	}
	switch res.Status {
	case jobs.StatusCompleted:
		return nil
	case jobs.StatusTimeout:
		return &clio.ExitError{Code: clio.ExitTimeout, Err: fmt.Errorf("job %s: %s", opts.JobID, res.Error)}
	case jobs.StatusCancelled:
		return &clio.ExitError{Code: clio.ExitCanceled, Err: fmt.Errorf("job %s was cancelled", opts.JobID)}
	}
	return &clio.ExitError{Code: clio.ExitFailure, Err: fmt.Errorf("job %s %s: %s", opts.JobID, res.Status, res.Error)}
}

// terminateSelf sends the buffered metrics and terminates the worker's own
// EC2 instance (aws backend).
func terminateSelf(ctx context.Context, set *backends.Set, log *slog.Logger) {
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := set.Flush(tctx); err != nil {
		log.Warn("send metrics", "err", err)
	}
	skipped, err := set.Self.Terminate(tctx)
	switch {
	case err != nil:
		log.Error("terminate this instance", "instance_id", set.Self.InstanceID, "err", err)
	case skipped:
		log.Info("not terminating this instance: its no-shutdown file exists", "instance_id", set.Self.InstanceID)
	default:
		log.Info("terminating this instance", "instance_id", set.Self.InstanceID)
	}
}
