package initcmd

import (
	"context"
	"errors"
	"fmt"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	stdio "io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/jobclient"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
)

// remoteEstimateTimeout bounds the size estimate made from here before a
// remote submit (the source may be reachable only from the service).
const remoteEstimateTimeout = 20 * time.Second

// remoteFollowInterval is how often a followed remote job is polled.
const remoteFollowInterval = time.Second

// runRemote submits init to the job service and follows it until it ends:
// exit 0 only when the job completed. Ctrl-C stops following (the job
// keeps running) and says how to follow again.
func runRemote(ctx context.Context, opts *Options, eng replicator.Options) error {
	io := opts.IO
	if opts.Selection.ConfigFile != "" {
		return clio.Usage(hint.Wrap(errors.New("--config rules files are not sent to the job service"),
			"pass the rules as flags (--include-tables, --table-filter, …), or run here with --local"))
	}
	if opts.NoResume {
		return clio.Usage(hint.Wrap(errors.New("--no-resume is not available for remote jobs (a retried job always resumes)"),
			"to start over, pass --drop-existing, or run here with --local"))
	}
	client, err := jobclient.NewClient(opts.RemoteAPI, opts.APIKey, opts.InsecureHTTP)
	if err != nil {
		return err
	}

	req := jobs.Request{
		SchemaVersion: jobs.SchemaVersion,
		Command:       jobs.CommandInit,
		SourceURL:     eng.Source.Secret(),
		TargetURL:     eng.Target.Secret(),
		Filter: jobs.Filter{
			IncludeDatabases: opts.Selection.IncludeDatabases, ExcludeDatabases: opts.Selection.ExcludeDatabases,
			IncludeTables: opts.Selection.IncludeTables, ExcludeTables: opts.Selection.ExcludeTables,
			SchemaOnlyTables: opts.Selection.SchemaOnlyTables,
			TableFilters:     opts.Selection.TableFilters, TimeFilters: opts.Selection.TimeFilters,
		},
		Options: jobs.Options{DropExisting: opts.DropExisting, NoSync: opts.NoSync, JobTimeout: opts.JobTimeout},
	}

	ectx, cancel := context.WithTimeout(pg.WithoutRetry(ctx), remoteEstimateTimeout)
	est, err := replicator.Estimate(ectx, eng)
	cancel()
	switch {
	case err == nil:
		var total int64
		for _, d := range est {
			total += d.SizeBytes
		}
		req.Options.EstimatedSizeBytes = total
		printEstimate(io, est, eng)
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		fmt.Fprintf(io.ErrOut, "Could not estimate the size from here (%v); submitting without an estimate.\n", err)
		fmt.Fprintf(io.ErrOut, "From %s to %s, sync afterwards: %v\n", eng.Source, eng.Target, !eng.NoSync)
	}
	if !opts.Yes {
		if !io.CanPrompt() {
			return clio.Usage(errors.New("init changes the target and needs confirmation, but there is no terminal to ask on: pass --yes"))
		}
		ok, err := io.Confirm(ctx, fmt.Sprintf("Submit to %s?", client.BaseURL))
		if err != nil {
			return err
		}
		if !ok {
			return clio.ErrDeclined
		}
	}

	sub, err := submit(ctx, io, client, req)
	if err != nil {
		return err
	}
	ids := io.Out
	if opts.Output.JSON() {
		ids = io.ErrOut // stdout carries the final job as JSON
	}
	if opts.Detach {
		// Submit and go: the job id is the document.
		if opts.Output.JSON() {
			if err := clio.WriteJSON(io.Out, struct {
				JobID   string `json:"job_id"`
				TraceID string `json:"trace_id"`
			}{sub.JobID, sub.TraceID}); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(io.Out, sub.JobID)
		}
		fmt.Fprintf(io.ErrOut, "Submitted to %s as job %s (trace %s). Follow it with: postgres-seren-replicator jobs show %s --follow\n",
			client.BaseURL, sub.JobID, sub.TraceID, sub.JobID)
		return nil
	}
	fmt.Fprintf(ids, "Job ID: %s\nTrace ID: %s\n", sub.JobID, sub.TraceID)
	fmt.Fprintf(io.ErrOut, "Submitted to %s. Following the job (Ctrl-C stops following; the job keeps running).\n", client.BaseURL)

	v, err := jobclient.Follow(ctx, io.ErrOut, client, sub.JobID, jobclient.FollowOptions{
		TTY: io.IsStderrTTY(), Logs: true, Verbose: io.Verbose, Interval: remoteFollowInterval,
	})
	if err != nil {
		if ctx.Err() != nil {
			return jobclient.Detached(sub.JobID)
		}
		return fmt.Errorf("follow job %s: %w", sub.JobID, err)
	}
	if opts.Output.JSON() {
		if err := clio.WriteJSON(io.Out, v); err != nil {
			return err
		}
	}
	if io.IsStderrTTY() && !io.Verbose {
		// On a terminal the log was not streamed: end with what the
		// local run shows, the warnings and the phase table.
		remoteSummary(ctx, io.ErrOut, client, v.JobID)
	}
	if v.Status != jobs.StatusCompleted {
		return jobclient.OutcomeError(v)
	}
	fmt.Fprintf(io.ErrOut, "Job %s completed", v.JobID)
	if v.StartedAt != nil && v.CompletedAt != nil {
		fmt.Fprintf(io.ErrOut, " in %s", v.CompletedAt.Sub(*v.StartedAt).Round(time.Second))
	}
	fmt.Fprintln(io.ErrOut, ".")
	return nil
}

// submit sends the job with one Idempotency-Key, retrying while the
// service is at its limit (429, after Retry-After) or briefly unreachable,
// so a burst waits instead of failing and a retried request never creates
// a second job.
func submit(ctx context.Context, io *iostreams.IOStreams, c *apiclient.Client, req jobs.Request) (apiSubmit, error) {
	key := uuid.NewString()
	unreachable := 0
	for {
		resp, err := c.Submit(ctx, req, key)
		if err == nil {
			return apiSubmit{JobID: resp.JobID, TraceID: resp.TraceID}, nil
		}
		if ctx.Err() != nil {
			return apiSubmit{}, ctx.Err()
		}
		var ae *apiclient.Error
		wait := time.Duration(0)
		switch {
		case errors.As(err, &ae) && ae.StatusCode == 429:
			wait = max(ae.RetryAfter, time.Second)
			fmt.Fprintf(io.ErrOut, "The service is busy (%s); submitting again in %s.\n", ae.Message, wait)
		case errors.As(err, &ae) && ae.StatusCode >= 500 && unreachable < 3:
			unreachable++
			wait = time.Duration(unreachable) * 2 * time.Second
		case ae == nil && unreachable < 3 && hint.Of(err) != "" && !isUsage(err):
			// Connection refused / reset: a restarting service.
			unreachable++
			wait = time.Duration(unreachable) * 2 * time.Second
		default:
			return apiSubmit{}, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return apiSubmit{}, ctx.Err()
		case <-t.C:
		}
	}
}

type apiSubmit struct{ JobID, TraceID string }

func isUsage(err error) bool {
	var ec interface{ ExitCode() int }
	return errors.As(err, &ec) && ec.ExitCode() == 2
}

var phaseLine = regexp.MustCompile(`^phase (\S+) (\S+): (\S+) ?(.*)$`)

// remoteSummary prints a finished job's warnings and phase table, read
// from the lines its worker logged ("warning: …", "phase DB NAME: TIME
// DETAIL", "init done: …").
func remoteSummary(ctx context.Context, w stdio.Writer, c *apiclient.Client, id string) {
	var warnings, phases []string
	var done string
	_, err := c.Logs(ctx, id, apiclient.LogOptions{}, func(l joblog.Line) error {
		switch {
		case strings.HasPrefix(l.Text, "warning: "):
			warnings = append(warnings, strings.TrimPrefix(l.Text, "warning: "))
		case phaseLine.MatchString(l.Text):
			phases = append(phases, l.Text)
		case strings.HasPrefix(l.Text, "init done: "):
			done = strings.TrimPrefix(l.Text, "init done: ")
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(w, "Could not read the job's log for its summary: %v\n", err)
		return
	}
	for _, x := range warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
	if len(phases) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nDATABASE\tPHASE\tWALL TIME\tDETAIL")
		for _, p := range phases {
			m := phaseLine.FindStringSubmatch(p)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m[1], m[2], m[3], m[4])
		}
		if done != "" {
			fmt.Fprintf(tw, "total\t\t\t%s\n", done)
		}
		tw.Flush()
	}
	if len(warnings) > 0 {
		fmt.Fprintf(w, "%d warnings (see above)\n", len(warnings))
	}
}
