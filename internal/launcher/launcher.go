// Package launcher starts and stops the worker that runs one job: a local
// `worker --job-id ID` subprocess embedded (launcher/locallauncher), one EC2
// instance per job on AWS (launcher/ec2launcher).
package launcher

import (
	"context"
	"errors"
	"time"
)

// Request is what a launch needs; the worker itself reads the rest from
// the job store, so nothing secret is passed.
type Request struct {
	JobID              string
	TraceID            string
	EstimatedSizeBytes int64
}

// Worker describes a launched worker.
type Worker struct {
	ID           string // pid or instance id
	JobID        string
	InstanceType string
	LaunchedAt   time.Time
	Running      bool
}

// Launcher is what a backend implements.
type Launcher interface {
	Launch(ctx context.Context, r Request) (Worker, error)
	// Stop terminates a worker (cancel, timeout, reaping). Stopping a
	// worker that is already gone is not an error.
	Stop(ctx context.Context, workerID string) error
	// List returns the workers this launcher manages that are still alive.
	List(ctx context.Context) ([]Worker, error)
}

// ErrCapacity marks a transient launch failure (no capacity, throttling):
// the job stays queued and is retried later.
var ErrCapacity = errors.New("no capacity to launch a worker now")
