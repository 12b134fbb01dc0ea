package api

import (
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// The JSON shapes of the API (docs/api.md). The client (internal/apiclient)
// decodes into the same types.

// SubmitResponse answers POST /jobs.
type SubmitResponse struct {
	JobID   string      `json:"job_id"`
	TraceID string      `json:"trace_id"`
	Status  jobs.Status `json:"status"`
}

// JobView is a job as the API shows it: never credentials, never the
// owner's key.
type JobView struct {
	JobID       string              `json:"job_id"`
	TraceID     string              `json:"trace_id"`
	Principal   string              `json:"principal"`
	Status      jobs.Status         `json:"status"`
	Command     jobs.Command        `json:"command"`
	CreatedAt   time.Time           `json:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at"`
	StartedAt   *time.Time          `json:"started_at,omitempty"`
	CompletedAt *time.Time          `json:"completed_at,omitempty"`
	Error       string              `json:"error,omitempty"`
	Progress    jobs.Progress       `json:"progress"`
	LogURL      string              `json:"log_url"`
	Filter      jobs.Filter         `json:"filter"`
	Options     jobs.Options        `json:"options"`
	Attempts    int                 `json:"attempts"`
	History     []jobs.StatusChange `json:"history"`
}

// ListResponse answers GET /jobs.
type ListResponse struct {
	Jobs []JobView `json:"jobs"`
	// NextCursor is passed as ?cursor= for the next page; absent on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

// ErrorResponse is every error body. Field names the offending request
// field for validation errors.
type ErrorResponse struct {
	Error  string      `json:"error"`
	Field  string      `json:"field,omitempty"`
	Status jobs.Status `json:"status,omitempty"` // the job's status, on 409 from cancel
}

// HealthResponse answers GET /health.
type HealthResponse struct {
	Status  string `json:"status"` // "ok" or "unavailable"
	Store   string `json:"store"`  // "ok" or "unreachable"
	Version string `json:"version,omitempty"`
}

func viewOf(j *jobs.Job, logURL string) JobView {
	// Errors and reasons are the worker's full text; the key holder sees
	// them without addresses, paths or how a connection failed
	// (jobs.PublicMessage); the server keeps the rest under the trace id.
	h := make([]jobs.StatusChange, len(j.History))
	for i, c := range j.History {
		c.Reason = jobs.PublicMessage(c.Reason)
		h[i] = c
	}
	return JobView{
		JobID:       j.ID,
		Principal:   j.Owner,
		TraceID:     j.TraceID,
		Status:      j.Status,
		Command:     j.Spec.Command,
		CreatedAt:   j.CreatedAt,
		UpdatedAt:   j.UpdatedAt,
		StartedAt:   j.StartedAt,
		CompletedAt: j.CompletedAt,
		Error:       jobs.PublicMessage(j.Error),
		Progress:    j.Progress,
		LogURL:      logURL,
		Filter:      j.Spec.Filter,
		Options:     j.Spec.Options,
		Attempts:    j.Attempts,
		History:     h,
	}
}
