// Package joblog stores and serves a job's log lines; every line the worker
// writes is tagged [TRACE:<trace_id>]. Embedded: rows in the SQLite store
// (joblog/sqlitelog); AWS: CloudWatch Logs (joblog/cwlog).
// joblog/joblogtest is the conformance suite.
package joblog

import (
	"context"
	"time"
)

// Line is one log line.
type Line struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Text string    `json:"text"`
}

// DefaultReadLimit is the page size of Read when limit <= 0.
const DefaultReadLimit = 1000

// Log is what a backend implements. Job ids are [A-Za-z0-9_-]; times are
// kept to the millisecond (CloudWatch's precision).
type Log interface {
	// Append stores lines in order. A line with Seq 0 is numbered after the
	// job's last line; a non-zero Seq (greater than the last) is kept. A
	// zero Time becomes now.
	Append(ctx context.Context, jobID string, lines []Line) error
	// Read returns the job's lines with Seq > after in Seq order, at most
	// limit (DefaultReadLimit if limit <= 0); none, without error, for a
	// job that has no lines. Following a log is Read(after = last Seq).
	Read(ctx context.Context, jobID string, after int64, limit int) ([]Line, error)
	// URL is where an operator reads the log (CloudWatch console link, or
	// the API's own /jobs/{id}/logs).
	URL(jobID, workerID string) string
}
