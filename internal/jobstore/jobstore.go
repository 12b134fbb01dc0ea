// Package jobstore defines the job store: where job records live. Drivers
// (jobstore/sqlitestore embedded, jobstore/dynamostore on AWS) implement the
// small Driver interface; Store adds what must not differ between them:
// legal-transition checks, compare-and-set retries, timestamps.
// jobstore/jobstoretest is the conformance suite every driver passes.
package jobstore

import (
	"context"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// ListQuery selects jobs of one owner, newest first.
type ListQuery struct {
	Owner  string
	Limit  int    // 1..100, default 20
	Cursor string // opaque, from the previous page
	Status jobs.Status
}

// Expect is the condition of a Driver.Put: the stored version and, for a
// worker's transition, the worker and attempt that must still hold the job.
type Expect struct {
	Version int64
	Lease   *jobs.Lease
}

// Driver is what a backend implements.
type Driver interface {
	// Create inserts a new job. If j.IdempotencyKey is set and a job of the
	// same owner and key exists, it returns that job and jobs.ErrDuplicate.
	Create(ctx context.Context, j *jobs.Job) (*jobs.Job, error)
	// Get reads one job with a strongly consistent read (jobs.ErrNotFound).
	Get(ctx context.Context, id string) (*jobs.Job, error)
	// Put replaces the job if its stored Version equals e.Version and, when
	// e.Lease is set, its stored worker id and attempt equal the lease's
	// (else jobs.ErrConflict), in one conditional write. j.Version is
	// already incremented. Put never creates a job: for a missing id it
	// returns jobs.ErrNotFound (or jobs.ErrConflict where the backend
	// cannot tell the two apart).
	Put(ctx context.Context, j *jobs.Job, e Expect) error
	// List pages through one owner's jobs, newest first (CreatedAt, ties
	// in any stable order), with q.Limit already clamped by Store. A cursor
	// it cannot decode is ErrInvalidCursor; next is "" on the last page.
	List(ctx context.Context, q ListQuery) (page []*jobs.Job, next string, err error)
	// Active lists jobs in provisioning or running (for the scheduler,
	// the limit and the reaper), without a full scan where possible.
	Active(ctx context.Context) ([]*jobs.Job, error)
	// DeleteExpired removes jobs whose ExpiresAt is before now (a no-op
	// where the backend expires them itself, e.g. DynamoDB TTL).
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
	Close() error
}

// Store is the portable job store.
type Store struct {
	d   Driver
	now func() time.Time
}

// New wraps a driver. now defaults to time.Now.
func New(d Driver, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{d: d, now: now}
}

// WithDriver returns a Store over wrap(driver) with the same clock: a
// decorator sees every write (e.g. to count the jobs it ends).
func (s *Store) WithDriver(wrap func(Driver) Driver) *Store {
	return &Store{d: wrap(s.d), now: s.now}
}
