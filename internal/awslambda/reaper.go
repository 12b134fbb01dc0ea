package awslambda

import (
	"context"

	"github.com/aws/aws-lambda-go/events"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
)

// Reaper is the scheduled function (every 5 minutes): one run of the
// service's checker (service.CheckOnce), the code `serve` runs every few
// seconds. It terminates worker instances whose job has ended (or was
// purged) and duplicates, ends jobs past their timeout and terminates
// their workers, and fails a job whose worker stopped heartbeating or
// whose instance is gone.
//
// On AWS a lost worker's job is failed, not re-queued (MaxAttempts is 1),
// unless a spot interruption took the worker: then it is re-queued and the
// next worker resumes from the checkpoint (sqs:SendMessage).
// It records JobFinished for the jobs it ends itself (countFinished: at
// the write that ends them, so a cold start never counts one twice); each
// worker records the ends it writes.
type Reaper struct {
	set *backends.Set
	svc *service.Service
	cfg Config
}

// NewReaper opens the backends and the service.
func NewReaper(ctx context.Context, cfg Config) (*Reaper, error) {
	set, err := cfg.open(ctx, backends.PartStore|backends.PartQueue|backends.PartLauncher|backends.PartLogs|backends.PartMetrics)
	if err != nil {
		return nil, err
	}
	countFinished(set)
	svc, err := service.New(service.Config{
		Store: set.Store, Queue: set.Queue, Launcher: set.Launcher, Logs: set.Logs,
		Logger: cfg.Logger.With("component", "reaper"), Now: cfg.Now,
		MaxConcurrentJobs: cfg.MaxConcurrentJobs,
		MaxAttempts:       1,
		HeartbeatTimeout:  cfg.HeartbeatTimeout,
		GoneGrace:         cfg.GoneGrace,
		ReapGrace:         cfg.ReapGrace,
		DefaultJobTimeout: cfg.DefaultJobTimeout,
	})
	if err != nil {
		set.Close()
		return nil, err
	}
	return &Reaper{set: set, svc: svc, cfg: cfg}, nil
}

// Close releases the backends.
func (r *Reaper) Close() error { return r.set.Close() }

// Handle runs one check. Its error fails the invocation (no retry: the
// next run is 5 minutes away and does the same work).
func (r *Reaper) Handle(ctx context.Context, ev events.EventBridgeEvent) error {
	defer finish(ctx, r.svc, r.set, r.cfg.Logger)
	r.cfg.Logger.Info("reaper run", "event_id", ev.ID, "time", ev.Time)
	return r.svc.CheckOnce(ctx)
}
