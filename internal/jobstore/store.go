package jobstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// ErrInvalidCursor is returned by List for a cursor that this store did not
// hand out (the API answers 400).
var ErrInvalidCursor = errors.New("invalid page cursor")

// List page sizes.
const (
	DefaultListLimit = 20
	MaxListLimit     = 100
)

// maxApplyAttempts bounds the compare-and-set retries of Apply. Each retry
// re-reads the job and re-checks the transition, so only writers racing on
// a still-legal move (heartbeats, progress, provisioning bookkeeping) retry.
const maxApplyAttempts = 25

// Create stores a new job in provisioning. It fills ID and TraceID when
// empty, CreatedAt/UpdatedAt, the first History entry, ExpiresAt
// (CreatedAt + jobs.Retention) and Version 1. Owner is required.
//
// When the owner already submitted a job with the same IdempotencyKey, or
// the ID is taken, Create returns the existing job together with an error
// matching jobs.ErrDuplicate, so a retried submit answers with the job it
// created the first time.
func (s *Store) Create(ctx context.Context, j *jobs.Job) (*jobs.Job, error) {
	if j == nil {
		return nil, errors.New("create job: nil job")
	}
	if j.Owner == "" {
		return nil, errors.New("create job: owner is required")
	}
	nj := *j
	now := s.clock()
	if nj.ID == "" {
		nj.ID = uuid.NewString()
	}
	if nj.TraceID == "" {
		nj.TraceID = uuid.NewString()
	}
	nj.Status = jobs.StatusProvisioning
	nj.History = []jobs.StatusChange{{Status: jobs.StatusProvisioning, At: now, Reason: "submitted"}}
	nj.CreatedAt, nj.UpdatedAt = now, now
	nj.ExpiresAt = now.Add(jobs.Retention)
	nj.Version = 1
	nj.Credentials = append([]byte(nil), j.Credentials...)
	got, err := s.d.Create(ctx, &nj)
	if err != nil {
		if errors.Is(err, jobs.ErrDuplicate) {
			return got, fmt.Errorf("create job: %w", err)
		}
		return nil, fmt.Errorf("create job %s: %w", nj.ID, err)
	}
	if got == nil {
		got = &nj
	}
	return got, nil
}

// Get reads one job. A job whose ExpiresAt has passed is reported as not found even
// if the backend has not deleted it yet (DynamoDB TTL can lag by days).
func (s *Store) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if id == "" {
		return nil, fmt.Errorf("get job: empty id: %w", jobs.ErrNotFound)
	}
	j, err := s.d.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jobs.ErrNotFound) {
			return nil, fmt.Errorf("job %s: %w", id, jobs.ErrNotFound)
		}
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	if s.expired(j) {
		return nil, fmt.Errorf("job %s: %w", id, jobs.ErrNotFound)
	}
	return j, nil
}

// List pages through one owner's jobs, newest first. Limit is clamped to
// 1..MaxListLimit (0 means DefaultListLimit). A page may be shorter than
// Limit even when more follow; the listing ends when next is "".
func (s *Store) List(ctx context.Context, q ListQuery) ([]*jobs.Job, string, error) {
	if q.Owner == "" {
		return nil, "", errors.New("list jobs: owner is required")
	}
	switch {
	case q.Limit <= 0:
		q.Limit = DefaultListLimit
	case q.Limit > MaxListLimit:
		q.Limit = MaxListLimit
	}
	page, next, err := s.d.List(ctx, q)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	out := page[:0]
	for _, j := range page {
		if !s.expired(j) {
			out = append(out, j)
		}
	}
	return out, next, nil
}

// Active returns every provisioning or running job, of all owners, oldest
// first.
func (s *Store) Active(ctx context.Context) ([]*jobs.Job, error) {
	all, err := s.d.Active(ctx)
	if err != nil {
		return nil, fmt.Errorf("list active jobs: %w", err)
	}
	return s.keepActive(all), nil
}

// keepActive drops the jobs that are not active or have expired and sorts
// the rest oldest first.
func (s *Store) keepActive(all []*jobs.Job) []*jobs.Job {
	out := make([]*jobs.Job, 0, len(all))
	for _, j := range all {
		if j.Status.Active() && !s.expired(j) {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].CreatedAt.Equal(out[b].CreatedAt) {
			return out[a].CreatedAt.Before(out[b].CreatedAt)
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// Apply reads the job, applies t at the store's clock and writes it back
// as a compare-and-set on Version. When another writer got there first it
// re-reads and tries again, as long as t is still legal for the job's new
// state. It returns the job as written.
//
// When t does not fit the job's state (jobs.ErrConflict: e.g. cancelling a
// completed job; jobs.ErrIllegalTransition; jobs.ErrLeaseLost: a fenced
// transition of a worker that no longer holds the job) Apply returns the
// job as it is together with the error, so the caller can report the
// current status. A fenced transition's lease is checked against the job
// read and again in the driver's conditional write.
func (s *Store) Apply(ctx context.Context, id string, t jobs.Transition) (*jobs.Job, error) {
	var lastErr error
	for attempt := 0; attempt < maxApplyAttempts; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return nil, fmt.Errorf("update job %s to %s: %w (after %v)", id, t.To, err, lastErr)
			}
		}
		cur, err := s.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("update job %s to %s: %w", id, t.To, err)
		}
		next := *cur
		next.History = append([]jobs.StatusChange(nil), cur.History...)
		if err := t.Apply(&next, s.clock()); err != nil {
			return cur, err
		}
		prev := cur.Version
		next.Version = prev + 1
		err = s.d.Put(ctx, &next, Expect{Version: prev, Lease: t.Lease})
		if err == nil {
			return &next, nil
		}
		if !errors.Is(err, jobs.ErrConflict) {
			return nil, fmt.Errorf("update job %s to %s: %w", id, t.To, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("update job %s to %s: gave up after %d concurrent changes: %w", id, t.To, maxApplyAttempts, lastErr)
}

// Purge deletes jobs whose ExpiresAt has passed and reports how many the
// backend removed (0 where the backend expires records itself).
func (s *Store) Purge(ctx context.Context) (int, error) {
	n, err := s.d.DeleteExpired(ctx, s.clock())
	if err != nil {
		return n, fmt.Errorf("purge expired jobs: %w", err)
	}
	return n, nil
}

// Close closes the driver.
func (s *Store) Close() error { return s.d.Close() }

// clock returns the current time in UTC without a monotonic reading, so
// what is stored equals what is read back.
func (s *Store) clock() time.Time { return s.now().UTC().Round(0) }

func (s *Store) expired(j *jobs.Job) bool {
	return !j.ExpiresAt.IsZero() && j.ExpiresAt.Before(s.clock())
}

// backoff waits a short, jittered, growing time before retry n, or until
// ctx ends.
func backoff(ctx context.Context, n int) error {
	max := time.Duration(n) * 2 * time.Millisecond
	if max > 50*time.Millisecond {
		max = 50 * time.Millisecond
	}
	d := time.Millisecond + rand.N(max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
