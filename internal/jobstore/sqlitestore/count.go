package sqlitestore

import (
	"context"
	"fmt"

	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
)

var _ jobstore.ActiveCounter = (*Driver)(nil)

// CountActive counts provisioning and running jobs from the jobs_active
// partial index alone (no table rows read, nothing decoded).
func (d *Driver) CountActive(ctx context.Context) (int, error) {
	var n int
	err := d.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs
		WHERE status IN ('provisioning', 'running')`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count active jobs: %w", err)
	}
	return n, nil
}
