// Package sqlitelog is the embedded joblog.Log: lines are rows of the
// job_log table in the service's SQLite file (internal/sqlitedb), keyed by
// (job_id, seq). A trigger deletes a job's lines when the job store purges
// the job.
package sqlitelog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
)

// Log implements joblog.Log on a database opened by sqlitedb.Open.
type Log struct {
	db  *sql.DB
	now func() time.Time
}

var _ joblog.Log = (*Log)(nil)

// New returns a Log on db (the caller owns db). now defaults to time.Now.
func New(db *sql.DB, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{db: db, now: now}
}

// Append stores lines after the job's last line in one transaction.
func (l *Log) Append(ctx context.Context, jobID string, lines []joblog.Line) error {
	if len(lines) == 0 {
		return nil
	}
	if jobID == "" {
		return errors.New("append log: empty job id")
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("append log of job %s: %w", jobID, err)
	}
	defer tx.Rollback()
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM job_log WHERE job_id = ?`, jobID).Scan(&last); err != nil {
		return fmt.Errorf("append log of job %s: %w", jobID, err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO job_log (job_id, seq, at, text) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("append log of job %s: %w", jobID, err)
	}
	defer stmt.Close()
	now := l.now()
	for _, ln := range lines {
		seq := ln.Seq
		if seq == 0 {
			seq = last + 1
		}
		if seq <= last {
			return fmt.Errorf("append log of job %s: line seq %d is not after the last line %d", jobID, seq, last)
		}
		last = seq
		at := ln.Time
		if at.IsZero() {
			at = now
		}
		if _, err := stmt.ExecContext(ctx, jobID, seq, at.UnixMilli(), ln.Text); err != nil {
			return fmt.Errorf("append log of job %s: %w", jobID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append log of job %s: %w", jobID, err)
	}
	return nil
}

// Read returns lines with Seq > after, at most limit.
func (l *Log) Read(ctx context.Context, jobID string, after int64, limit int) ([]joblog.Line, error) {
	if limit <= 0 {
		limit = joblog.DefaultReadLimit
	}
	rows, err := l.db.QueryContext(ctx, `SELECT seq, at, text FROM job_log
		WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?`, jobID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read log of job %s: %w", jobID, err)
	}
	defer rows.Close()
	out := []joblog.Line{}
	for rows.Next() {
		var (
			ln joblog.Line
			ms int64
		)
		if err := rows.Scan(&ln.Seq, &ms, &ln.Text); err != nil {
			return nil, fmt.Errorf("read log of job %s: %w", jobID, err)
		}
		ln.Time = time.UnixMilli(ms).UTC()
		out = append(out, ln)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log of job %s: %w", jobID, err)
	}
	return out, nil
}

// URL is the API's own log route for the job.
func (l *Log) URL(jobID, _ string) string {
	return "/jobs/" + url.PathEscape(jobID) + "/logs"
}
