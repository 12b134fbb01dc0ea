package jobstore

import (
	"context"
	"fmt"
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
