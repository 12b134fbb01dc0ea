package jobclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/progress"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
)

// FollowOptions shape Follow.
type FollowOptions struct {
	// TTY draws a live progress display; otherwise progress is printed as
	// plain lines.
	TTY bool
	// Logs streams the job's log lines (when not a TTY) instead of
	// progress lines.
	Logs bool
	// Verbose streams the log lines on a terminal too.
	Verbose bool
	// Interval between status polls (default 1s).
	Interval time.Duration
}

// Follow shows a job's progress on w until it ends, and returns its final
// view. When ctx ends first it returns the last view seen and ctx's error
// (the job keeps running on the service).
func Follow(ctx context.Context, w io.Writer, c *apiclient.Client, id string, o FollowOptions) (api.JobView, error) {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	pr := progress.New(w, o.TTY)
	defer pr.Close()

	var logWG sync.WaitGroup
	logCtx, stopLogs := context.WithCancel(ctx)
	defer stopLogs()
	var logErr error
	if o.Logs && (!o.TTY || o.Verbose) {
		logWG.Add(1)
		go func() {
			defer logWG.Done()
			_, logErr = c.Logs(logCtx, id, apiclient.LogOptions{Follow: true}, func(l joblog.Line) error {
				pr.Logf("%s", l.Text)
				return nil
			})
		}()
	}

	var last api.JobView
	var lastStatus jobs.Status
	var lastLine string
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		v, err := c.Get(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			var ae *apiclient.Error
			if errors.As(err, &ae) && ae.StatusCode < 500 && ae.StatusCode != 429 {
				return last, err
			}
			// A transient failure: keep following.
			pr.Logf("status: %v (retrying)", err)
		} else {
			last = v
			if v.Status != lastStatus {
				lastStatus = v.Status
				msg := "status: " + string(v.Status)
				if v.Attempts > 1 && v.Status == jobs.StatusRunning {
					msg += fmt.Sprintf(" (attempt %d, resuming from its checkpoint)", v.Attempts)
				}
				if v.Status == jobs.StatusProvisioning && len(v.History) > 1 {
					if h := v.History[len(v.History)-1]; h.Reason != "" && h.Status == jobs.StatusProvisioning {
						msg += " (" + h.Reason + ")"
					}
				}
				pr.Logf("%s", msg)
			}
			pr.Progress(toEngine(v.Progress))
			if !o.TTY && !o.Logs {
				if line := ProgressLine(v); line != "" && line != lastLine {
					lastLine = line
					pr.Logf("progress: %s", line)
				}
			}
			if v.Status.Terminal() {
				// Let the log stream deliver the last lines, then stop it.
				done := make(chan struct{})
				go func() { logWG.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					stopLogs()
					logWG.Wait()
				case <-ctx.Done():
					stopLogs()
					logWG.Wait()
				}
				if logErr != nil && ctx.Err() == nil && !errors.Is(logErr, context.Canceled) {
					pr.Logf("log: %v", logErr)
				}
				return v, nil
			}
		}
		select {
		case <-ctx.Done():
			stopLogs()
			logWG.Wait()
			return last, ctx.Err()
		case <-t.C:
		}
	}
}

func toEngine(p jobs.Progress) replicator.Progress {
	return replicator.Progress{
		Phase: p.Phase, CurrentDatabase: p.CurrentDatabase,
		DatabasesCompleted: p.DatabasesCompleted, DatabasesTotal: p.DatabasesTotal,
		CurrentTable: p.CurrentTable, TablesCompleted: p.TablesCompleted, TablesTotal: p.TablesTotal,
		BytesCopied: p.BytesCopied, BytesTotal: p.BytesTotal,
	}
}

// ProgressLine summarizes a job's progress in one line ("" when there is
// none yet).
func ProgressLine(v api.JobView) string {
	p := v.Progress
	if p.Phase == "" && p.DatabasesTotal == 0 {
		return ""
	}
	s := p.Phase
	if p.DatabasesTotal > 0 {
		s += fmt.Sprintf(", databases %d/%d", p.DatabasesCompleted, p.DatabasesTotal)
	}
	if p.CurrentDatabase != "" {
		s += " (" + p.CurrentDatabase + ")"
	}
	if p.TablesTotal > 0 {
		s += fmt.Sprintf(", tables %d/%d", p.TablesCompleted, p.TablesTotal)
	}
	if p.BytesTotal > 0 || p.BytesCopied > 0 {
		s += fmt.Sprintf(", %s of ~%s", replicator.HumanBytes(p.BytesCopied), replicator.HumanBytes(p.BytesTotal))
	}
	return s
}
