package awslambda

import (
	"context"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry"
)

// countFinished makes the set's store record JobFinished for every job
// this function ends (the API's cancels, the reaper's timeouts and lost
// workers). Each end is one conditional write that succeeds once, so no
// job is counted twice, and a worker counts only the ends it writes.
func countFinished(set *backends.Set) {
	if set.Metrics == nil || set.Store == nil {
		return
	}
	set.Store = set.Store.WithDriver(func(d jobstore.Driver) jobstore.Driver {
		return finishedDriver{Driver: d, m: set.Metrics}
	})
}

type finishedDriver struct {
	jobstore.Driver
	m telemetry.Metrics
}

func (f finishedDriver) Put(ctx context.Context, j *jobs.Job, expect jobstore.Expect) error {
	if err := f.Driver.Put(ctx, j, expect); err != nil {
		return err
	}
	if j.Status.Terminal() {
		f.m.JobFinished(string(j.Spec.Command), string(j.Status), ranFor(j))
	}
	return nil
}

// ranFor is the job's duration: from its start (or submission) to its end.
func ranFor(j *jobs.Job) time.Duration {
	start, end := j.CreatedAt, j.UpdatedAt
	if j.StartedAt != nil {
		start = *j.StartedAt
	}
	if j.CompletedAt != nil {
		end = *j.CompletedAt
	}
	if end.Before(start) {
		return 0
	}
	return end.Sub(start)
}
