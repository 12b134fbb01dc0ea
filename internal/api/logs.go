package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// logPage is how many lines one store read returns.
const logPage = 1000

// logWriteTimeout is how long writing one batch of log lines may take.
const logWriteTimeout = time.Minute

// LogContentType is the logs response: NDJSON, one joblog.Line
// ({"seq","time","text"}) per line, so a client resumes with ?after=<seq>.
const LogContentType = "application/x-ndjson"

// logs handles GET /jobs/{id}/logs?after=N&limit=M&follow=true.
//
// Without follow it writes the lines after N (at most limit) and ends. With
// follow it keeps writing lines as they arrive, checking every
// LogPollInterval, and ends once the job is terminal and every line is
// written (or after FollowTimeout, or when the client goes away).
func (h *handler) logs(w http.ResponseWriter, r *http.Request, owner string) {
	q := r.URL.Query()
	var after int64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after: must be a whole number ≥ 0 (the seq of the last line read)", "after")
			return
		}
		after = n
	}
	limit := int64(-1)
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: must be a whole number ≥ 1", "limit")
			return
		}
		limit = n
	}
	follow := false
	if s := q.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "follow: must be true or false", "follow")
			return
		}
		follow = b
	}
	if follow && limit > 0 {
		writeError(w, http.StatusBadRequest, "limit: cannot be combined with follow", "limit")
		return
	}
	j, ok := h.load(w, r, owner)
	if !ok {
		return
	}

	ctx := r.Context()
	if follow && h.cfg.FollowTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.FollowTimeout)
		defer cancel()
	}
	hd := w.Header()
	hd.Set("Content-Type", LogContentType)
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if follow {
		// A followed log lasts as long as the job: the server's read
		// timeout must not end it (the client's going away still does).
		_ = rc.SetReadDeadline(time.Time{}) // not every writer supports deadlines
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)

	// write copies every line after `after` to the client; it reports
	// false when the client is gone or the store failed.
	write := func() bool {
		// The server's write timeout bounds one response; a long log
		// gets a fresh deadline for every batch it writes instead.
		_ = rc.SetWriteDeadline(time.Now().Add(logWriteTimeout))
		for limit != 0 {
			n := logPage
			if limit > 0 && limit < int64(n) {
				n = int(limit)
			}
			lines, err := h.cfg.Logs.Read(ctx, j.ID, after, n)
			if err != nil {
				if ctx.Err() == nil {
					h.log.Error("read job log", "job_id", j.ID, "err", err)
				}
				return false
			}
			for _, l := range lines {
				if err := enc.Encode(joblog.Line{Seq: l.Seq, Time: l.Time, Text: jobs.PublicMessage(l.Text)}); err != nil {
					return false
				}
				after = l.Seq
			}
			if limit > 0 {
				limit -= int64(len(lines))
			}
			if len(lines) < n {
				break
			}
		}
		_ = rc.Flush() // not every writer flushes (e.g. a Lambda adapter buffers)
		return true
	}

	if !follow {
		write()
		return
	}
	ticker := time.NewTicker(h.cfg.LogPollInterval)
	defer ticker.Stop()
	status := j.Status
	for {
		// Read the status before the lines: lines written before the job
		// ended are then always sent before the stream ends.
		terminal := status.Terminal()
		if !write() || terminal {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		cur, err := h.cfg.Store.Get(ctx, j.ID)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Error("follow job log: read job", "job_id", j.ID, "err", err)
			}
			return
		}
		status = cur.Status
	}
}
