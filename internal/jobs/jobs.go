// Package jobs owns the job model of the job service: the Job record, its
// statuses and the legal transitions between them, and the decoding and
// validation of submit requests. It does no I/O.
//
// The state machine (docs/job-states.md):
//
//	provisioning ──► running ──► completed | failed | timeout | cancelled
//	     │                │
//	     └──► failed | cancelled | timeout (never started)
//	running ──► provisioning (worker lost, retried from its checkpoint)
//
// Every change of status goes through a Transition built by the named
// constructors below, and stores apply it as a compare-and-set on the
// job's Version, so two actors can never both move a job. A worker's
// transitions are also fenced on its Lease (worker id and attempt), so a
// worker that lost its job can never write it again.
package jobs

import (
	"errors"
	"fmt"
	"time"
)

// Status is a job's lifecycle state.
type Status string

// The statuses, as they appear in the API.
const (
	StatusProvisioning Status = "provisioning"
	StatusRunning      Status = "running"
	StatusCompleted    Status = "completed"
	StatusFailed       Status = "failed"
	StatusTimeout      Status = "timeout"
	StatusCancelled    Status = "cancelled"
)

// AllStatuses lists every status in lifecycle order.
var AllStatuses = []Status{StatusProvisioning, StatusRunning, StatusCompleted, StatusFailed, StatusTimeout, StatusCancelled}

// Terminal reports whether no transition leaves s.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusTimeout, StatusCancelled:
		return true
	}
	return false
}

// Active reports whether a job in s counts against the concurrency limit.
func (s Status) Active() bool { return s == StatusProvisioning || s == StatusRunning }

// legal lists the allowed transitions.
var legal = map[Status][]Status{
	StatusProvisioning: {StatusRunning, StatusFailed, StatusCancelled, StatusTimeout},
	StatusRunning:      {StatusCompleted, StatusFailed, StatusTimeout, StatusCancelled, StatusProvisioning},
}

// CanTransition reports whether from → to is legal.
func CanTransition(from, to Status) bool {
	for _, s := range legal[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Command is an engine command a job runs.
type Command string

// The commands a job may run.
const (
	CommandInit     Command = "init"
	CommandValidate Command = "validate"
	CommandSync     Command = "sync"
	CommandStatus   Command = "status"
	CommandVerify   Command = "verify"
)

// Commands lists the valid commands.
var Commands = []Command{CommandInit, CommandValidate, CommandSync, CommandStatus, CommandVerify}

// Errors stores and services return; test with errors.Is.
var (
	ErrNotFound = errors.New("job not found")
	// ErrConflict: the job was not in the expected state (or was changed
	// concurrently); the caller re-reads and decides again.
	ErrConflict = errors.New("job changed concurrently or is not in the expected state")
	// ErrIllegalTransition: the requested move is not in the state machine.
	ErrIllegalTransition = errors.New("illegal job status transition")
	// ErrDuplicate: a job with this ID (or idempotency key) already exists.
	ErrDuplicate = errors.New("job already exists")
	// ErrLeaseLost: a worker's transition was refused because the job is
	// no longer held by that worker and attempt (it was re-queued and
	// handed to another worker, or relaunched). It matches ErrConflict
	// too. The worker must stop: another worker may be running the job.
	ErrLeaseLost = fmt.Errorf("the job is no longer this worker's: %w", ErrConflict)
)

// Lease is one worker's hold on a job: the worker id the launcher recorded
// (jobs.Provisioned) and the attempt it was recorded under. Every
// transition a worker makes carries its lease (Transition.By), and stores
// apply it only while the job still names that worker and attempt, so a
// worker that lost its job can never write it again.
type Lease struct {
	WorkerID string
	Attempt  int
}

// Holds reports whether l is j's current lease.
func (l Lease) Holds(j *Job) bool {
	return l.WorkerID != "" && j.WorkerID == l.WorkerID && j.Attempts == l.Attempt
}

// LeaseOf returns the lease a job's current worker holds.
func LeaseOf(j *Job) Lease { return Lease{WorkerID: j.WorkerID, Attempt: j.Attempts} }

// Progress is what the worker reports while it runs.
type Progress struct {
	Phase              string `json:"phase,omitempty"`
	CurrentDatabase    string `json:"current_database,omitempty"`
	DatabasesCompleted int    `json:"databases_completed"`
	DatabasesTotal     int    `json:"databases_total"`
	CurrentTable       string `json:"current_table,omitempty"`
	TablesCompleted    int    `json:"tables_completed"`
	TablesTotal        int    `json:"tables_total"`
	BytesCopied        int64  `json:"bytes_copied"`
	BytesTotal         int64  `json:"bytes_total"`
	Message            string `json:"message,omitempty"`
}

// StatusChange records one transition.
type StatusChange struct {
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Spec is what the job runs, without credentials (safe to store in clear
// and to return).
type Spec struct {
	Command Command `json:"command"`
	Filter  Filter  `json:"filter"`
	Options Options `json:"options"`
}

// Job is the stored record of one job.
type Job struct {
	ID      string `json:"job_id"`
	TraceID string `json:"trace_id"`
	// Owner is the ID (not the secret) of the API key that submitted it.
	Owner          string `json:"owner"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Spec           Spec   `json:"spec"`
	// Credentials is the sealed (encrypted) Credentials blob; only the
	// worker opens it.
	Credentials []byte `json:"-"`

	// RequestFingerprint is a keyed hash of the whole submitted request,
	// URLs included (api: fingerprint.go), kept with an IdempotencyKey so a
	// reuse of the key with another request is refused. Never shown.
	RequestFingerprint string `json:"request_fingerprint,omitempty"`

	Status      Status         `json:"status"`
	History     []StatusChange `json:"history"`
	Error       string         `json:"error,omitempty"`
	Progress    Progress       `json:"progress"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
	CompletedAt *time.Time     `json:"completed_at,omitempty"`
	HeartbeatAt *time.Time     `json:"heartbeat_at,omitempty"`
	// WorkerID is the pid or instance id running the job.
	WorkerID     string `json:"worker_id,omitempty"`
	InstanceType string `json:"instance_type,omitempty"`
	// Attempts counts worker starts (a lost worker is retried).
	Attempts int    `json:"attempts"`
	LogURL   string `json:"log_url,omitempty"`
	// ExpiresAt is when the record is purged (TTL, 30 days).
	ExpiresAt time.Time `json:"expires_at"`
	// Version increments on every write; stores compare-and-set on it.
	Version int64 `json:"version"`
}

// Credentials is what Job.Credentials seals.
type Credentials struct {
	SourceURL string `json:"source_url"`
	TargetURL string `json:"target_url"`
}

// Retention is how long job records are kept.
const Retention = 30 * 24 * time.Hour

// DefaultJobTimeout is the default --job-timeout of a job whose size is
// not known (8 hours); DefaultTimeoutFor gives the default by size.
const DefaultJobTimeout = 8 * time.Hour

// DefaultTimeoutFor is the timeout of a job without options.job_timeout,
// by the size bands of the guide's cost table (which also picks the
// worker's instance type, internal/launcher/ec2launcher SizeBand): about
// three times the table's run time, so a slow source does not fail a job
// that is merely long.
//
//	unknown (0)     8 h  (DefaultJobTimeout)
//	< 10 GB         4 h  (table: ~30 min)
//	10 GB – 100 GB 12 h  (table: ~3 h)
//	100 GB – 1 TB  36 h  (table: ~12 h)
//	> 1 TB         72 h  (table: ~24 h)
func DefaultTimeoutFor(estimatedBytes int64) time.Duration {
	const gb = int64(1_000_000_000)
	switch {
	case estimatedBytes <= 0:
		return DefaultJobTimeout
	case estimatedBytes < 10*gb:
		return 4 * time.Hour
	case estimatedBytes < 100*gb:
		return 12 * time.Hour
	case estimatedBytes <= 1000*gb:
		return 36 * time.Hour
	default:
		return 72 * time.Hour
	}
}

// Timeout returns the job's timeout: options.job_timeout, else the
// default for its estimated size.
func (j *Job) Timeout() time.Duration {
	if j.Spec.Options.JobTimeout > 0 {
		return time.Duration(j.Spec.Options.JobTimeout) * time.Second
	}
	return DefaultTimeoutFor(j.Spec.Options.EstimatedSizeBytes)
}

// Transition is a legal status change plus the fields that go with it.
// Build one with the constructors; apply it with Apply.
type Transition struct {
	From   []Status // the job must be in one of these
	To     Status
	Reason string
	// Lease, when set, fences the transition: it applies only while the
	// job is held by this worker and attempt (else ErrLeaseLost). Stores
	// also put it in their compare-and-set condition.
	Lease *Lease
	apply func(j *Job, now time.Time)
}

// By fences t to the worker holding l: see Transition.Lease.
func (t Transition) By(l Lease) Transition {
	t.Lease = &l
	return t
}

// Apply checks and applies t to j at now.
func (t Transition) Apply(j *Job, now time.Time) error {
	ok := false
	for _, f := range t.From {
		if j.Status == f {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("job %s is %s, not %v: %w", j.ID, j.Status, t.From, ErrConflict)
	}
	if t.Lease != nil && !t.Lease.Holds(j) {
		return fmt.Errorf("job %s is held by worker %q attempt %d, not %q attempt %d: %w",
			j.ID, j.WorkerID, j.Attempts, t.Lease.WorkerID, t.Lease.Attempt, ErrLeaseLost)
	}
	if t.To != j.Status && !CanTransition(j.Status, t.To) {
		return fmt.Errorf("job %s: %s → %s: %w", j.ID, j.Status, t.To, ErrIllegalTransition)
	}
	if t.To != j.Status {
		j.History = append(j.History, StatusChange{Status: t.To, At: now, Reason: t.Reason})
	}
	j.Status = t.To
	if t.apply != nil {
		t.apply(j, now)
	}
	if t.To.Terminal() {
		if j.CompletedAt == nil {
			n := now
			j.CompletedAt = &n
		}
		// Nothing runs an ended job again: its sealed credentials are
		// dropped rather than kept until the record expires.
		j.Credentials = nil
	}
	j.UpdatedAt = now
	return nil
}

// Provisioned records the worker launched for a provisioning job; the
// status stays provisioning until the worker itself starts.
func Provisioned(workerID, instanceType, logURL string) Transition {
	return Transition{From: []Status{StatusProvisioning}, To: StatusProvisioning, apply: func(j *Job, now time.Time) {
		j.WorkerID, j.InstanceType = workerID, instanceType
		if logURL != "" {
			j.LogURL = logURL
		}
		j.Attempts++
		j.HeartbeatAt = &now
	}}
}

// Started moves a provisioning job to running (the worker has begun).
func Started(workerID string) Transition {
	return Transition{From: []Status{StatusProvisioning}, To: StatusRunning, apply: func(j *Job, now time.Time) {
		if j.StartedAt == nil {
			j.StartedAt = &now
		}
		if workerID != "" {
			j.WorkerID = workerID
		}
		j.HeartbeatAt = &now
	}}
}

// Heartbeat records liveness and progress of a running job.
func Heartbeat(p *Progress) Transition {
	return Transition{From: []Status{StatusRunning}, To: StatusRunning, apply: func(j *Job, now time.Time) {
		j.HeartbeatAt = &now
		if p != nil {
			j.Progress = *p
		}
	}}
}

// Completed ends a running job successfully.
func Completed(p *Progress) Transition {
	return Transition{From: []Status{StatusRunning}, To: StatusCompleted, apply: func(j *Job, now time.Time) {
		if p != nil {
			j.Progress = *p
		}
		j.Error = ""
	}}
}

// Failed ends a job with a (credential-free) reason.
func Failed(reason string) Transition {
	return Transition{From: []Status{StatusProvisioning, StatusRunning}, To: StatusFailed, Reason: reason,
		apply: func(j *Job, now time.Time) { j.Error = reason }}
}

// TimedOut ends a job that ran past its timeout.
func TimedOut(limit time.Duration) Transition {
	reason := fmt.Sprintf("job exceeded its timeout of %s", limit)
	return Transition{From: []Status{StatusProvisioning, StatusRunning}, To: StatusTimeout, Reason: reason,
		apply: func(j *Job, now time.Time) { j.Error = reason }}
}

// Cancelled ends a job at the user's request.
func Cancelled() Transition {
	return Transition{From: []Status{StatusProvisioning, StatusRunning}, To: StatusCancelled, Reason: "cancelled by user",
		apply: func(j *Job, now time.Time) { j.Error = "cancelled by user" }}
}

// Requeued returns a running job whose worker was lost to provisioning, so
// a new worker resumes it from its checkpoint.
func Requeued(reason string) Transition {
	return Transition{From: []Status{StatusRunning}, To: StatusProvisioning, Reason: reason,
		apply: func(j *Job, now time.Time) { j.WorkerID = ""; j.HeartbeatAt = nil }}
}
