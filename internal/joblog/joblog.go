// Package joblog stores and serves a job's log lines; every line the worker
// writes is tagged [TRACE:<trace_id>]. Embedded: rows in the SQLite store
// (joblog/sqlitelog); AWS: CloudWatch Logs (joblog/cwlog).
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

// Log is what a backend implements.
type Log interface {
	Append(ctx context.Context, jobID string, lines []Line) error
	// Read returns lines with Seq > after, at most limit.
	Read(ctx context.Context, jobID string, after int64, limit int) ([]Line, error)
	// URL is where an operator reads the log (CloudWatch console link, or
	// the API's own /jobs/{id}/logs).
	URL(jobID, workerID string) string
}
