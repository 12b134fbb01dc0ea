// Package jobscmd implements `jobs list|show|logs|cancel`: the client of
// the job service (serve, or the AWS API) for jobs submitted with the same
// API key. The service is --remote-api or SEREN_REMOTE_API; the key
// --api-key or SEREN_API_KEY. Tables on a terminal, --json for scripts.
package jobscmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/jobclient"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// Options are the parsed flags of `jobs`.
type Options struct {
	IO        *iostreams.IOStreams
	RemoteAPI string
	APIKey    string
	Output    clio.Output
	// InsecureHTTP is --insecure-http.
	InsecureHTTP bool

	// list
	Status string
	Limit  int
	All    bool
	// show, logs, cancel
	ID     string
	Follow bool
	After  int64

	// Interval between polls while following (default 1s).
	Interval time.Duration
}

// New returns the jobs command with its subcommands.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List, follow, read the logs of and cancel jobs on the job service",
		Long: `jobs talks to the job service (a local serve or the AWS API) with your API key
and shows only the jobs submitted with that key.

The service is --remote-api or $SEREN_REMOTE_API; the key is $SEREN_API_KEY
(or --api-key, which leaves it in your shell history).`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&opts.RemoteAPI, "remote-api", "", "job service URL (env "+jobclient.EnvRemoteAPI+")")
	pf.StringVar(&opts.APIKey, "api-key", "", "API key (prefer env "+jobclient.EnvAPIKey+")")
	opts.Output.AddPersistent(cmd)
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error { return opts.Output.Check() }
	cmdutil.AddInsecureHTTPFlag(pf, &opts.InsecureHTTP)

	list := &cobra.Command{
		Use:   "list",
		Short: "List your jobs, newest first",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return runList(cmd.Context(), opts) },
	}
	list.Flags().StringVar(&opts.Status, "status", "", "only jobs in this status ("+statusList()+")")
	list.Flags().IntVar(&opts.Limit, "limit", 20, "jobs per page (1-100)")
	list.Flags().BoolVar(&opts.All, "all", false, "fetch every page")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a job; --follow waits until it ends (exit 0 only if it completed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			return runShow(cmd.Context(), opts)
		},
	}
	show.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "show progress until the job ends")

	logs := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a job's log; --follow until it ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			return runLogs(cmd.Context(), opts)
		},
	}
	logs.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines until the job ends")
	logs.Flags().Int64Var(&opts.After, "after", 0, "start after this line number (seq)")

	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job (its worker is stopped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			return runCancel(cmd.Context(), opts)
		},
	}
	for _, c := range []*cobra.Command{show, logs, cancel} {
		c.ValidArgsFunction = completeJobIDs(opts)
	}
	cmd.AddCommand(list, show, logs, cancel)
	return cmd
}

func statusList() string {
	s := make([]string, len(jobs.AllStatuses))
	for i, st := range jobs.AllStatuses {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

func writeJSON(opts *Options, v any) error {
	return clio.WriteJSON(opts.IO.Out, v)
}

func runList(ctx context.Context, opts *Options) error {
	if opts.Limit < 1 || opts.Limit > 100 {
		return clio.Usage(fmt.Errorf("--limit %d: must be from 1 to 100", opts.Limit))
	}
	if opts.Status != "" {
		ok := false
		for _, s := range jobs.AllStatuses {
			ok = ok || string(s) == opts.Status
		}
		if !ok {
			return clio.Usage(fmt.Errorf("--status %q: use one of %s", opts.Status, statusList()))
		}
	}
	c, err := jobclient.NewClient(opts.RemoteAPI, opts.APIKey, opts.InsecureHTTP)
	if err != nil {
		return err
	}
	resp := api.ListResponse{Jobs: []api.JobView{}}
	cursor := ""
	for {
		page, err := c.List(ctx, apiclient.ListOptions{Limit: opts.Limit, Cursor: cursor, Status: jobs.Status(opts.Status)})
		if err != nil {
			return err
		}
		resp.Jobs = append(resp.Jobs, page.Jobs...)
		resp.NextCursor = page.NextCursor
		if !opts.All || page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if opts.Output.JSON() {
		resp.Jobs = clio.List(resp.Jobs)
		return writeJSON(opts, resp)
	}
	if len(resp.Jobs) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No jobs.")
		return nil
	}
	if !opts.IO.IsStdoutTTY() {
		// Piped: one tab-separated line per job, no header (stable for scripts).
		for _, j := range resp.Jobs {
			fmt.Fprintf(opts.IO.Out, "%s\t%s\t%s\t%s\t%s\n", j.JobID, j.Command, j.Status,
				j.CreatedAt.UTC().Format(time.RFC3339), listDetail(j))
		}
	} else {
		w := tabwriter.NewWriter(opts.IO.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "JOB ID\tCOMMAND\tSTATUS\tCREATED\tPROGRESS")
		for _, j := range resp.Jobs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", j.JobID, j.Command, j.Status, j.CreatedAt.UTC().Format(time.RFC3339), listDetail(j))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if resp.NextCursor != "" {
		fmt.Fprintln(opts.IO.ErrOut, "More jobs follow: pass --all, or --limit up to 100.")
	}
	return nil
}

func runShow(ctx context.Context, opts *Options) error {
	c, err := jobclient.NewClient(opts.RemoteAPI, opts.APIKey, opts.InsecureHTTP)
	if err != nil {
		return err
	}
	var v api.JobView
	if opts.Follow {
		v, err = jobclient.Follow(ctx, opts.IO.ErrOut, c, opts.ID, jobclient.FollowOptions{TTY: opts.IO.IsStderrTTY(), Interval: opts.Interval})
		if err != nil {
			if ctx.Err() != nil {
				return jobclient.Detached(opts.ID)
			}
			return err
		}
	} else if v, err = c.Get(ctx, opts.ID); err != nil {
		return err
	}
	if opts.Output.JSON() {
		if err := writeJSON(opts, v); err != nil {
			return err
		}
	} else {
		printJob(opts, v)
	}
	if opts.Follow && v.Status != jobs.StatusCompleted {
		return &clio.ExitError{Code: clio.ExitFailure, Err: jobclient.OutcomeError(v)}
	}
	return nil
}

func printJob(opts *Options, v api.JobView) {
	w := tabwriter.NewWriter(opts.IO.Out, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s:\t%s\n", k, v) }
	row("Job ID", v.JobID)
	row("Trace ID", v.TraceID)
	row("Command", string(v.Command))
	row("Status", string(v.Status))
	row("Created", v.CreatedAt.UTC().Format(time.RFC3339))
	row("Started", stamp(v.StartedAt))
	row("Completed", stamp(v.CompletedAt))
	if v.StartedAt != nil {
		end := time.Now()
		if v.CompletedAt != nil {
			end = *v.CompletedAt
		}
		row("Run time", end.Sub(*v.StartedAt).Round(time.Second).String())
	}
	row("Attempts", fmt.Sprint(v.Attempts))
	row("Progress", orDash(jobclient.ProgressLine(v)))
	if v.Error != "" {
		row("Error", v.Error)
	}
	row("Log", v.LogURL)
	w.Flush()
	if len(v.History) > 0 {
		fmt.Fprintln(opts.IO.Out, "History:")
		for _, h := range v.History {
			line := fmt.Sprintf("  %s  %s", h.At.UTC().Format(time.RFC3339), h.Status)
			if h.Reason != "" {
				line += "  (" + h.Reason + ")"
			}
			fmt.Fprintln(opts.IO.Out, line)
		}
	}
}

func runLogs(ctx context.Context, opts *Options) error {
	if opts.After < 0 {
		return clio.Usage(fmt.Errorf("--after %d: must not be negative", opts.After))
	}
	c, err := jobclient.NewClient(opts.RemoteAPI, opts.APIKey, opts.InsecureHTTP)
	if err != nil {
		return err
	}
	c.PollInterval = opts.Interval
	enc := json.NewEncoder(opts.IO.Out)
	_, err = c.Logs(ctx, opts.ID, apiclient.LogOptions{After: opts.After, Follow: opts.Follow}, func(l joblog.Line) error {
		if opts.Output.JSON() {
			return enc.Encode(l)
		}
		_, err := fmt.Fprintf(opts.IO.Out, "%s %s\n", l.Time.UTC().Format(time.RFC3339Nano), l.Text)
		return err
	})
	if err != nil && ctx.Err() != nil && opts.Follow {
		return &clio.ExitError{Code: clio.ExitCanceled, Err: hint.Wrap(fmt.Errorf("stopped following the log of job %s", opts.ID),
			"follow it again with: postgres-seren-replicator jobs logs "+opts.ID+" --follow")}
	}
	return err
}

func runCancel(ctx context.Context, opts *Options) error {
	c, err := jobclient.NewClient(opts.RemoteAPI, opts.APIKey, opts.InsecureHTTP)
	if err != nil {
		return err
	}
	v, err := c.Cancel(ctx, opts.ID)
	if err != nil {
		var ae *apiclient.Error
		if errors.As(err, &ae) && ae.StatusCode == 409 {
			return hint.Wrap(fmt.Errorf("job %s already ended as %s; nothing to cancel", opts.ID, ae.JobStatus),
				"see it with: postgres-seren-replicator jobs show "+opts.ID)
		}
		return err
	}
	if opts.Output.JSON() {
		return writeJSON(opts, v)
	}
	if v.Status == jobs.StatusCancelled {
		fmt.Fprintf(opts.IO.ErrOut, "Job %s cancelled.\n", v.JobID)
	} else {
		fmt.Fprintf(opts.IO.ErrOut, "Cancelling job %s (status %s); its worker is being stopped.\n", v.JobID, v.Status)
	}
	return nil
}

// listDetail is the progress of a job, or why it failed.
func listDetail(j api.JobView) string {
	if j.Status == jobs.StatusFailed && j.Error != "" {
		return truncate(strings.ReplaceAll(j.Error, "\n", " "), 60)
	}
	return orDash(jobclient.ProgressLine(j))
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// completeJobIDs completes a job id argument with the key's recent jobs.
func completeJobIDs(opts *Options) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := jobclient.NewClient(opts.RemoteAPI, opts.APIKey, opts.InsecureHTTP)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		page, err := c.List(ctx, apiclient.ListOptions{Limit: 50})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, j := range page.Jobs {
			out = append(out, cobra.CompletionWithDesc(j.JobID, string(j.Command)+" "+string(j.Status)))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
