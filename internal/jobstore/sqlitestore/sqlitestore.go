// Package sqlitestore is the embedded jobstore.Driver: jobs live in the
// jobs table of the service's SQLite file (internal/sqlitedb). Each job is
// stored whole as JSON beside the columns that queries filter and sort on
// (owner, status, created_at, idempotency key, expiry, worker id) and a
// BLOB column for the sealed credentials. Compare-and-set is an UPDATE
// guarded by the version column. Statements are prepared once
// (sqlitedb.Stmts); the number of active jobs is a counter kept by
// triggers (sqlitedb migration 5), so neither the concurrent-job limit nor
// the list of running workers costs more as the queue grows.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

// Driver implements jobstore.Driver on a database opened by sqlitedb.Open.
type Driver struct {
	st    *sqlitedb.Stmts
	batch *sqlitedb.Batcher // Create: concurrent submissions commit together
}

var _ jobstore.Driver = (*Driver)(nil)

// New returns a driver on db. The caller owns db: Close does not close it,
// because the queue, job log and API keys share the same file.
func New(db *sql.DB) *Driver {
	st := sqlitedb.NewStmts(db)
	return &Driver{st: st, batch: sqlitedb.NewBatcher(db, st)}
}

const columns = `doc, credentials, version`

func scanJob(row interface{ Scan(...any) error }) (*jobs.Job, error) {
	var (
		doc     string
		creds   []byte
		version int64
	)
	if err := row.Scan(&doc, &creds, &version); err != nil {
		return nil, err
	}
	var j jobs.Job
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		return nil, fmt.Errorf("decode stored job: %w", err)
	}
	if len(creds) > 0 {
		j.Credentials = creds
	}
	j.Version = version
	return &j, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// createAttempts bounds Create's retries when the job that made the insert
// conflict is gone by the time it is read (purged in between).
const createAttempts = 3

const (
	insertJob = `INSERT INTO jobs
		(id, owner, idempotency_key, status, created_at, expires_at, version, credentials, worker_id, doc)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`
	selectByID             = `SELECT ` + columns + ` FROM jobs WHERE id = ?`
	selectByIdempotencyKey = `SELECT ` + columns + ` FROM jobs WHERE owner = ? AND idempotency_key = ?`
)

// Create inserts j; an existing job with the same id, or the same owner and
// idempotency key, is returned with jobs.ErrDuplicate.
//
// The insert is one statement, committed together with the inserts of
// concurrent Creates (sqlitedb.Batcher); only when it conflicts is the
// existing job read.
func (d *Driver) Create(ctx context.Context, j *jobs.Job) (*jobs.Job, error) {
	doc, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	for attempt := 1; ; attempt++ {
		res, err := d.batch.Exec(ctx, insertJob,
			j.ID, j.Owner, nullable(j.IdempotencyKey), string(j.Status), sqlitedb.Nanos(j.CreatedAt),
			sqlitedb.Nanos(j.ExpiresAt), j.Version, j.Credentials, nullable(j.WorkerID), string(doc))
		if err != nil {
			return nil, fmt.Errorf("insert job: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, err
		}
		if n == 1 {
			out := *j
			return &out, nil
		}
		existing, err := d.conflicting(ctx, j)
		if err == nil {
			return existing, jobs.ErrDuplicate
		}
		if !errors.Is(err, sql.ErrNoRows) || attempt == createAttempts {
			return nil, fmt.Errorf("read existing job: %w", err)
		}
		// The conflicting job was deleted after the insert saw it: insert
		// again.
	}
}

// conflicting reads the job that made inserting j conflict.
func (d *Driver) conflicting(ctx context.Context, j *jobs.Job) (*jobs.Job, error) {
	if j.IdempotencyKey != "" {
		existing, err := scanJob(d.st.QueryRow(ctx, selectByIdempotencyKey, j.Owner, j.IdempotencyKey))
		if !errors.Is(err, sql.ErrNoRows) {
			return existing, err
		}
	}
	return scanJob(d.st.QueryRow(ctx, selectByID, j.ID))
}

// Get reads one job.
func (d *Driver) Get(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := scanJob(d.st.QueryRow(ctx, selectByID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, jobs.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read job: %w", err)
	}
	return j, nil
}

// Put replaces the job when its stored version is e.Version and, for a
// fenced write, its stored worker and attempt are e.Lease's.
func (d *Driver) Put(ctx context.Context, j *jobs.Job, e jobstore.Expect) error {
	doc, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	fenced, leaseWorker, leaseAttempt := 0, "", 0
	if e.Lease != nil {
		fenced, leaseWorker, leaseAttempt = 1, e.Lease.WorkerID, e.Lease.Attempt
	}
	res, err := d.st.Exec(ctx, `UPDATE jobs SET
		status = ?, expires_at = ?, version = ?, credentials = ?, worker_id = ?, doc = ?
		WHERE id = ? AND version = ?
		AND (? = 0 OR (worker_id = ? AND json_extract(doc, '$.attempts') = ?))`,
		string(j.Status), sqlitedb.Nanos(j.ExpiresAt), j.Version, j.Credentials, nullable(j.WorkerID), string(doc),
		j.ID, e.Version, fenced, leaseWorker, leaseAttempt)
	if err != nil {
		return fmt.Errorf("update job: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	var one int
	err = d.st.QueryRow(ctx, `SELECT 1 FROM jobs WHERE id = ?`, j.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return jobs.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("update job: %w", err)
	}
	return jobs.ErrConflict
}

// cursor is the position after the last job of a page.
type cursor struct {
	createdAt int64
	id        string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.createdAt, 10) + "/" + c.id))
}

func decodeCursor(s string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, jobstore.ErrInvalidCursor
	}
	ts, id, ok := strings.Cut(string(raw), "/")
	if !ok || id == "" {
		return cursor{}, jobstore.ErrInvalidCursor
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return cursor{}, jobstore.ErrInvalidCursor
	}
	return cursor{createdAt: n, id: id}, nil
}

// List pages through one owner's jobs, newest first.
func (d *Driver) List(ctx context.Context, q jobstore.ListQuery) ([]*jobs.Job, string, error) {
	where := []string{"owner = ?"}
	args := []any{q.Owner}
	if q.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(q.Status))
	}
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(created_at < ? OR (created_at = ? AND id < ?))")
		args = append(args, c.createdAt, c.createdAt, c.id)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = jobstore.DefaultListLimit
	}
	// One extra row tells whether another page follows.
	args = append(args, limit+1)
	// At most four query texts (status and cursor each present or not).
	rows, err := d.st.Query(ctx, `SELECT `+columns+`, created_at, id FROM jobs
		WHERE `+strings.Join(where, " AND ")+`
		ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var (
		page []*jobs.Job
		last cursor
		more bool
	)
	for rows.Next() {
		if len(page) == limit {
			more = true
			break
		}
		var (
			doc     string
			creds   []byte
			version int64
			c       cursor
		)
		if err := rows.Scan(&doc, &creds, &version, &c.createdAt, &c.id); err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		j, err := scanJob(rowValues{doc, creds, version})
		if err != nil {
			return nil, "", err
		}
		page = append(page, j)
		last = c
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	next := ""
	if more {
		next = last.encode()
	}
	return page, next, nil
}

// rowValues lets scanJob decode values already scanned from a wider row.
type rowValues struct {
	doc     string
	creds   []byte
	version int64
}

func (r rowValues) Scan(dest ...any) error {
	*dest[0].(*string) = r.doc
	*dest[1].(*[]byte) = r.creds
	*dest[2].(*int64) = r.version
	return nil
}

// Active lists provisioning and running jobs, oldest first.
func (d *Driver) Active(ctx context.Context) ([]*jobs.Job, error) {
	out, err := d.scanAll(ctx, `SELECT `+columns+` FROM jobs
		WHERE status IN ('provisioning', 'running') ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list active jobs: %w", err)
	}
	return out, nil
}

var _ jobstore.ActiveWorkerLister = (*Driver)(nil)

// ActiveWithWorker lists the provisioning and running jobs that have a
// worker recorded, oldest first, from the jobs_active_worker index: the
// jobs waiting in the queue are not read at all.
func (d *Driver) ActiveWithWorker(ctx context.Context) ([]*jobs.Job, error) {
	// INDEXED BY: without statistics the planner would rather walk
	// jobs_active, i.e. every queued job.
	out, err := d.scanAll(ctx, `SELECT `+columns+` FROM jobs INDEXED BY jobs_active_worker
		WHERE status IN ('provisioning', 'running') AND worker_id IS NOT NULL ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list active jobs with a worker: %w", err)
	}
	return out, nil
}

func (d *Driver) scanAll(ctx context.Context, query string, args ...any) ([]*jobs.Job, error) {
	rows, err := d.st.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*jobs.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteExpired deletes jobs whose ExpiresAt is before now; their log
// lines go with them (trigger jobs_delete_log).
func (d *Driver) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	res, err := d.st.Exec(ctx, `DELETE FROM jobs WHERE expires_at < ?`, sqlitedb.Nanos(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired jobs: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// Close does nothing: the database is shared and closed by its opener.
func (d *Driver) Close() error { return nil }
