package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
)

// maxJobIDLength bounds the {id} path segment; longer ids cannot exist.
const maxJobIDLength = 128

// submit handles POST /jobs.
func (h *handler) submit(w http.ResponseWriter, r *http.Request, owner string) {
	req, err := jobs.DecodeRequest(r.Body, jobs.MaxRequestBytes)
	if err != nil {
		var ve *jobs.ValidationError
		if errors.As(err, &ve) {
			writeError(w, http.StatusBadRequest, ve.Error(), ve.Field)
			return
		}
		writeError(w, http.StatusBadRequest, "invalid request", "body")
		return
	}
	idemKey := r.Header.Get(IdempotencyKeyHeader)
	if msg := checkIdempotencyKey(idemKey); msg != "" {
		writeError(w, http.StatusBadRequest, IdempotencyKeyHeader+": "+msg, IdempotencyKeyHeader)
		return
	}

	ctx := r.Context()
	job := &jobs.Job{
		ID:             uuid.NewString(),
		TraceID:        uuid.NewString(),
		Owner:          owner,
		IdempotencyKey: idemKey,
		Spec:           req.Spec(),
	}
	if idemKey != "" {
		fp, err := h.fingerprint(req)
		if err != nil {
			h.log.Error("fingerprint request", "job_id", job.ID, "err", err)
			writeError(w, http.StatusServiceUnavailable, "could not store the job; retry later", "")
			return
		}
		job.RequestFingerprint = fp
	}
	creds := req.Credentials()

	created, existing, err := h.admitAndCreate(ctx, job, creds)
	switch {
	case errors.Is(err, errSeal):
		h.log.Error("seal job credentials", "job_id", job.ID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "could not protect the credentials; retry later", "")
		return
	case errors.Is(err, errAtLimit):
		w.Header().Set("Retry-After", retryAfter(h.cfg.RetryAfter))
		writeError(w, http.StatusTooManyRequests,
			fmt.Sprintf("too many active jobs (limit %d); retry later", h.cfg.MaxConcurrentJobs), "")
		return
	case err != nil:
		h.log.Error("create job", "job_id", job.ID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "could not store the job; retry later", "")
		return
	case existing != nil:
		setJobID(r, existing.ID)
		if !h.sameRequest(existing, req) {
			writeError(w, http.StatusConflict, IdempotencyKeyHeader+" was already used for a different request", IdempotencyKeyHeader)
			return
		}
		w.Header().Set("Location", "/jobs/"+existing.ID)
		writeJSON(w, http.StatusOK, SubmitResponse{JobID: existing.ID, TraceID: existing.TraceID, Status: existing.Status})
		return
	}
	setJobID(r, created.ID)

	if created.Status == jobs.StatusFailed {
		// Created, but it could not be queued: it was failed with the
		// reason rather than left provisioning forever.
		writeError(w, http.StatusServiceUnavailable, "the job could not be queued; retry later", "")
		return
	}
	if h.cfg.Metrics != nil {
		h.cfg.Metrics.JobSubmitted(string(created.Spec.Command))
	}
	h.log.Info("job submitted", "job_id", created.ID, "trace_id", created.TraceID,
		"command", string(created.Spec.Command), "key_owner", owner)
	w.Header().Set("Location", "/jobs/"+created.ID)
	writeJSON(w, http.StatusCreated, SubmitResponse{JobID: created.ID, TraceID: created.TraceID, Status: created.Status})
}

var (
	errAtLimit = errors.New("concurrent job limit reached")
	errSeal    = errors.New("seal credentials")
)

// admitAndCreate checks the concurrent-job limit, seals the credentials
// (bound to the job id, before anything is stored), inserts the job and
// queues it. It returns the new job, or the job an earlier submit with the
// same idempotency key created, or errAtLimit.
//
// Unless the last admission decision left room, the limit is checked
// before sealing, so a submit turned away at the limit costs no sealing (a
// KMS call on AWS). The admitter then decides it together with the other
// submissions waiting, so a burst cannot overshoot the limit within this
// process. Sealing happens before admission: it only needs the job id, and
// on AWS it is a network round trip that would otherwise hold up every
// other submit.
func (h *handler) admitAndCreate(ctx context.Context, job *jobs.Job, creds jobs.Credentials) (created, existing *jobs.Job, err error) {
	if !h.admission.hadRoom() {
		if existing, err := h.checkLimit(ctx, job); err != nil || existing != nil {
			return nil, existing, err
		}
	}
	sealed, err := h.cfg.Keeper.SealCredentials(ctx, job.ID, creds)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errSeal, err)
	}
	job.Credentials = sealed

	t := h.admission.admit(job)
	if t.err != nil || t.existing != nil {
		return nil, t.existing, t.err
	}
	// The next admission decision waits until this job is stored and
	// queued, or has failed.
	defer t.release()
	got, err := h.cfg.Store.Create(ctx, job)
	if errors.Is(err, jobs.ErrDuplicate) && got != nil && got.Owner == job.Owner && job.IdempotencyKey != "" {
		return nil, got, nil
	}
	if err != nil {
		return nil, nil, err
	}
	// The job exists now: queue it even if the client has gone away.
	ctx = context.WithoutCancel(ctx)
	if err := h.cfg.Queue.Send(ctx, got.ID); err != nil {
		// Never leave a job that no worker will pick up: fail it with the
		// reason.
		h.log.Error("enqueue job", "job_id", got.ID, "err", err)
		failed, ferr := h.cfg.Store.Apply(ctx, got.ID, jobs.Failed("could not be queued for provisioning"))
		if ferr != nil {
			return nil, nil, fmt.Errorf("enqueue job: %w; and marking it failed: %w", err, ferr)
		}
		return failed, nil, nil
	}
	return got, nil, nil
}

// checkLimit returns errAtLimit when MaxConcurrentJobs jobs are active,
// except that a retried submit whose job is still active gets that job.
func (h *handler) checkLimit(ctx context.Context, job *jobs.Job) (existing *jobs.Job, err error) {
	n, err := h.cfg.Store.CountActive(ctx)
	if err != nil {
		return nil, err
	}
	if n < h.cfg.MaxConcurrentJobs {
		return nil, nil
	}
	if job.IdempotencyKey != "" {
		active, err := h.cfg.Store.Active(ctx)
		if err != nil {
			return nil, err
		}
		for _, a := range active {
			if a.Owner == job.Owner && a.IdempotencyKey == job.IdempotencyKey {
				return a, nil
			}
		}
	}
	return nil, errAtLimit
}

func checkIdempotencyKey(k string) string {
	if len(k) > maxIdempotencyKey {
		return fmt.Sprintf("must be at most %d characters", maxIdempotencyKey)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return "must be printable ASCII without spaces"
		}
	}
	return ""
}

// load reads a job for owner: another owner's job is not found, exactly
// like a job that does not exist, unless the key is an operator's. It
// writes the error response itself.
func (h *handler) load(w http.ResponseWriter, r *http.Request, owner string) (*jobs.Job, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxJobIDLength {
		writeError(w, http.StatusNotFound, "job not found", "")
		return nil, false
	}
	j, err := h.cfg.Store.Get(r.Context(), id)
	if err != nil {
		if isNotFound(err) {
			writeError(w, http.StatusNotFound, "job not found", "")
			return nil, false
		}
		h.log.Error("get job", "job_id", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "could not read the job; retry later", "")
		return nil, false
	}
	if j.Owner != owner {
		ident := identityOf(r)
		if !ident.Operator {
			writeError(w, http.StatusNotFound, "job not found", "")
			return nil, false
		}
		h.log.Info("operator access to another principal's job", "job_id", j.ID, "operator", owner,
			"key_id", ident.KeyID, "job_principal", j.Owner, "method", r.Method, "path", r.URL.Path)
	}
	setJobID(r, j.ID)
	return j, true
}

// get handles GET /jobs/{id}.
func (h *handler) get(w http.ResponseWriter, r *http.Request, owner string) {
	j, ok := h.load(w, r, owner)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, h.view(r, j))
}

// list handles GET /jobs?limit=&cursor=&status=&principal=. principal
// (another principal's jobs) is for operator keys only.
func (h *handler) list(w http.ResponseWriter, r *http.Request, owner string) {
	q := r.URL.Query()
	lq := jobstore.ListQuery{Owner: owner, Cursor: q.Get("cursor")}
	if p := q.Get("principal"); p != "" && p != owner {
		if !identityOf(r).Operator {
			writeError(w, http.StatusBadRequest, "principal: only an operator key may list another principal's jobs", "principal")
			return
		}
		lq.Owner = p
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > jobstore.MaxListLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: must be a whole number from 1 to %d", jobstore.MaxListLimit), "limit")
			return
		}
		lq.Limit = n
	}
	if s := q.Get("status"); s != "" {
		st := jobs.Status(s)
		if !validStatus(st) {
			writeError(w, http.StatusBadRequest, "status: must be one of "+statusList(), "status")
			return
		}
		lq.Status = st
	}
	page, next, err := h.cfg.Store.List(r.Context(), lq)
	if err != nil {
		if errors.Is(err, jobstore.ErrInvalidCursor) {
			writeError(w, http.StatusBadRequest, "cursor: not a cursor this service returned", "cursor")
			return
		}
		h.log.Error("list jobs", "err", err)
		writeError(w, http.StatusServiceUnavailable, "could not list jobs; retry later", "")
		return
	}
	resp := ListResponse{Jobs: make([]JobView, 0, len(page)), NextCursor: next}
	for _, j := range page {
		resp.Jobs = append(resp.Jobs, h.view(r, j))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

// cancel handles POST /jobs/{id}/cancel: 200 when the job is cancelled on
// return, 202 when the service is still stopping its worker, 409 when the
// job had already ended.
func (h *handler) cancel(w http.ResponseWriter, r *http.Request, owner string) {
	j, ok := h.load(w, r, owner)
	if !ok {
		return
	}
	if j.Status.Terminal() {
		writeJSON(w, http.StatusConflict, ErrorResponse{Error: "job already ended as " + string(j.Status), Status: j.Status})
		return
	}
	ctx := r.Context()
	var err error
	if h.cfg.Canceller != nil {
		err = h.cfg.Canceller.Cancel(ctx, j.ID)
	} else {
		var done *jobs.Job
		done, err = h.cfg.Store.Apply(ctx, j.ID, jobs.Cancelled())
		if err == nil && h.cfg.Metrics != nil {
			h.cfg.Metrics.JobFinished(string(done.Spec.Command), string(done.Status), since(done.CreatedAt, done.UpdatedAt))
		}
	}
	if err != nil && !errors.Is(err, jobs.ErrConflict) && !errors.Is(err, jobs.ErrIllegalTransition) {
		if isNotFound(err) {
			writeError(w, http.StatusNotFound, "job not found", "")
			return
		}
		h.log.Error("cancel job", "job_id", j.ID, "err", err)
		writeError(w, http.StatusServiceUnavailable, "could not cancel the job; retry later", "")
		return
	}
	cur, gerr := h.cfg.Store.Get(ctx, j.ID)
	if gerr != nil {
		h.log.Error("re-read cancelled job", "job_id", j.ID, "err", gerr)
		writeError(w, http.StatusServiceUnavailable, "could not read the job; retry later", "")
		return
	}
	if err != nil && cur.Status != jobs.StatusCancelled {
		// It ended some other way before the cancel landed.
		writeJSON(w, http.StatusConflict, ErrorResponse{Error: "job already ended as " + string(cur.Status), Status: cur.Status})
		return
	}
	h.log.Info("job cancel requested", "job_id", j.ID, "trace_id", j.TraceID, "status", string(cur.Status))
	code := http.StatusOK
	if !cur.Status.Terminal() {
		code = http.StatusAccepted
	}
	writeJSON(w, code, h.view(r, cur))
}

// view renders j, with its log URL made absolute when it is the API's own.
func (h *handler) view(r *http.Request, j *jobs.Job) JobView {
	u := j.LogURL
	if u == "" {
		u = h.cfg.Logs.URL(j.ID, j.WorkerID)
	}
	if u == "" {
		u = "/jobs/" + url.PathEscape(j.ID) + "/logs"
	}
	if strings.HasPrefix(u, "/") {
		u = baseURL(r) + u
	}
	return viewOf(j, u)
}

// baseURL is scheme://host of the request as the client addressed it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	host := r.Host
	if host == "" {
		host = "localhost"
	}
	return scheme + "://" + host
}

func validStatus(s jobs.Status) bool {
	for _, k := range jobs.AllStatuses {
		if s == k {
			return true
		}
	}
	return false
}

func statusList() string {
	s := make([]string, len(jobs.AllStatuses))
	for i, k := range jobs.AllStatuses {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func isNotFound(err error) bool { return errors.Is(err, jobs.ErrNotFound) }

// since is a duration for metrics that never goes negative.
func since(from, to time.Time) time.Duration {
	if to.Before(from) {
		return 0
	}
	return to.Sub(from)
}
