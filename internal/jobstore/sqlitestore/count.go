package sqlitestore

import (
	"context"
	"fmt"

	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
)

var _ jobstore.ActiveCounter = (*Driver)(nil)

// CountActive reads the number of provisioning and running jobs from the
// counter the jobs table's triggers keep (one row, however many jobs are
// queued).
func (d *Driver) CountActive(ctx context.Context) (int, error) {
	var n int
	err := d.st.QueryRow(ctx, `SELECT value FROM job_counters WHERE name = 'active'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count active jobs: %w", err)
	}
	return n, nil
}
