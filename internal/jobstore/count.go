package jobstore

import (
	"context"
	"fmt"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// ActiveCounter is an optional Driver method: count the jobs Driver.Active
// would list, without reading them. Drivers that lack it are counted
// through Active.
type ActiveCounter interface {
	CountActive(ctx context.Context) (int, error)
}

// CountActive returns how many jobs are provisioning or running (the
// concurrent-job limit), cheaply where the driver can count. Unlike Active
// it may count a job past its ExpiresAt that the backend has not deleted
// yet; no job stays active that long (the longest job timeout is a week,
// retention 30 days).
func (s *Store) CountActive(ctx context.Context) (int, error) {
	if c, ok := s.d.(ActiveCounter); ok {
		n, err := c.CountActive(ctx)
		if err != nil {
			return 0, fmt.Errorf("count active jobs: %w", err)
		}
		return n, nil
	}
	all, err := s.Active(ctx)
	if err != nil {
		return 0, err
	}
	return len(all), nil
}

// ActiveWorkerLister is an optional Driver method: list the jobs Driver.Active
// would, restricted to those with a WorkerID, without reading the jobs that
// wait in the queue. Drivers that lack it are served through Active.
type ActiveWorkerLister interface {
	ActiveWithWorker(ctx context.Context) ([]*jobs.Job, error)
}

// ActiveWithWorker returns the provisioning or running jobs that have a
// worker recorded (WorkerID set), oldest first: the local launcher's view
// of which workers should exist. Where the driver can, the queued jobs are
// not read, so a deep queue does not make this cost more.
func (s *Store) ActiveWithWorker(ctx context.Context) ([]*jobs.Job, error) {
	l, ok := s.d.(ActiveWorkerLister)
	if !ok {
		all, err := s.Active(ctx)
		if err != nil {
			return nil, err
		}
		out := all[:0]
		for _, j := range all {
			if j.WorkerID != "" {
				out = append(out, j)
			}
		}
		return out, nil
	}
	all, err := l.ActiveWithWorker(ctx)
	if err != nil {
		return nil, fmt.Errorf("list active jobs with a worker: %w", err)
	}
	return s.keepActive(all), nil
}
