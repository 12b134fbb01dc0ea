// Package initcmd implements `init`: the snapshot copy of roles, schema and
// data from a source server to a target, followed (unless --no-sync) by
// continuous logical replication. It runs locally, or on the job service
// when a remote API is configured and --local is not given.
package initcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/progress"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
)

// Options are init's parsed flags.
type Options struct {
	IO        *iostreams.IOStreams
	Conn      cmdutil.ConnFlags
	Selection cmdutil.SelectionFlags
	Sub       cmdutil.SubFlags

	Jobs          int
	DropExisting  bool
	NoSync        bool
	NoResume      bool
	Yes           bool
	NoInteractive bool
	Local         bool
	RemoteAPI     string
	APIKey        string
	InsecureHTTP  bool
	JobTimeout    int64
	PgBinDir      string
	Detach        bool
	Output        clio.Output
	SplitBytes    int64
}

// New returns the init command.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Copy roles, schema and data to the target, then start continuous sync",
		Long: `init copies every selected database of the source server to the target at one
consistent snapshot: roles, schema (indexes and constraints built after the data),
rows streamed with COPY in parallel, sequences, large objects, then ANALYZE.
Unless --no-sync is given it then keeps the target in sync with logical
replication, starting exactly at the snapshot.

An interrupted init continues where it stopped when run again (--no-resume
starts over). The source keeps taking writes the whole time.`,
		Example: `  postgres-seren-replicator init --source "$SRC" --target "$DST"
  postgres-seren-replicator init --source "$SRC" --target "$DST" --include-databases app --no-sync --yes
  SEREN_REMOTE_API=https://api.example.com SEREN_API_KEY=sk_live_… postgres-seren-replicator init --source "$SRC" --target "$DST"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return Run(cmd.Context(), opts)
		},
	}
	opts.Conn.Add(cmd)
	opts.Selection.Add(cmd)
	opts.Sub.AddTo(cmd)
	f := cmd.Flags()
	f.IntVarP(&opts.Jobs, "jobs", "j", cmdutil.DefaultJobs(), "parallel COPY streams and index builds")
	f.BoolVar(&opts.DropExisting, "drop-existing", false, "drop and recreate target databases that already hold data")
	f.BoolVar(&opts.NoSync, "no-sync", false, "copy only; do not start continuous replication")
	f.BoolVar(&opts.NoResume, "no-resume", false, "ignore an interrupted earlier run and start fresh")
	f.BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation or interactive selection")
	f.BoolVar(&opts.NoInteractive, "no-interactive", false, "do not offer interactive database/table selection")
	f.BoolVar(&opts.Local, "local", false, "run here even when a remote API is configured")
	f.StringVar(&opts.RemoteAPI, "remote-api", "", "job service URL (env SEREN_REMOTE_API)")
	f.BoolVar(&opts.Detach, "detach", false, "remote: submit the job, print its id and return (follow it later with jobs show ID --follow)")
	f.StringVar(&opts.APIKey, "api-key", "", "job service API key (prefer env SEREN_API_KEY)")
	cmdutil.AddInsecureHTTPFlag(f, &opts.InsecureHTTP)
	clio.SecondsVar(f, &opts.JobTimeout, "job-timeout", 28800, "remote job timeout (8h, 90m, or seconds)")
	f.StringVar(&opts.PgBinDir, "pg-bin-dir", "", "directory holding pg_dump/pg_restore (default: newest found)")
	opts.Output.Add(cmd)
	f.Int64Var(&opts.SplitBytes, "split-table-bytes", 0, "split tables larger than this many bytes into ranges copied in parallel (default 256 MiB)")
	_ = f.MarkHidden("split-table-bytes")
	return cmd
}

// Run executes init.
func Run(ctx context.Context, opts *Options) error {
	if opts.RemoteAPI == "" {
		opts.RemoteAPI = os.Getenv("SEREN_REMOTE_API")
	}
	if opts.APIKey == "" {
		opts.APIKey = os.Getenv("SEREN_API_KEY")
	}
	if err := opts.Output.Check(); err != nil {
		return err
	}
	if opts.Jobs < 1 {
		return clio.Usage(fmt.Errorf("--jobs must be at least 1, got %d", opts.Jobs))
	}
	src, dst, rules, err := cmdutil.Parse(&opts.Conn, &opts.Selection)
	if err != nil {
		return err
	}
	sub, err := opts.Sub.Options()
	if err != nil {
		return err
	}
	eng := replicator.Options{
		Subscription: sub,
		Source:       src, Target: dst, Rules: rules, Jobs: opts.Jobs, DropExisting: opts.DropExisting,
		NoSync: opts.NoSync, NoResume: opts.NoResume, PgBinDir: opts.PgBinDir, SplitBytes: opts.SplitBytes,
	}
	if opts.Detach && (opts.RemoteAPI == "" || opts.Local) {
		return clio.Usage(errors.New("--detach is for jobs on the job service: set --remote-api (or SEREN_REMOTE_API) and do not pass --local"))
	}
	if opts.RemoteAPI != "" && !opts.Local {
		return runRemote(ctx, opts, eng)
	}
	if err := cmdutil.CheckSelection(ctx, src, rules, &opts.Selection); err != nil {
		return err
	}
	io := opts.IO

	est, err := replicator.Estimate(ctx, eng)
	if err != nil {
		return err
	}
	interactive := io.CanPrompt() && !opts.Yes && !opts.NoInteractive && !opts.Selection.Given()
	if interactive {
		if est, err = pickDatabases(ctx, opts, est); err != nil {
			return err
		}
		if err := pickTables(ctx, opts, src, est); err != nil {
			return err
		}
		eng.Rules, err = opts.Selection.Rules()
		if err != nil {
			return err
		}
	}
	printEstimate(io, est, eng)
	if !opts.Yes {
		if !io.CanPrompt() {
			return clio.Usage(fmt.Errorf("init changes the target and needs confirmation, but there is no terminal to ask on: pass --yes"))
		}
		// Validate before asking: the user consents knowing the blockers
		// and warnings, and decides about tables sync cannot carry.
		fixes, err := checkFirst(ctx, opts, &eng)
		if err != nil {
			return err
		}
		if f := selectionFlags(opts); interactive && f != "" {
			fmt.Fprintf(io.ErrOut, "Your selection as flags (to run again or resume): %s\n", f)
		}
		ok, err := io.Confirm(ctx, "Proceed?")
		if err != nil {
			return err
		}
		if !ok {
			return clio.ErrDeclined
		}
		if err := applyFixes(ctx, src, fixes); err != nil {
			return err
		}
	}

	pr := progress.New(io.ErrOut, io.IsStderrTTY())
	start := time.Now()
	sum, err := replicator.Init(ctx, eng, pr)
	pr.Close()
	if sum != nil && sum.Duration == 0 {
		sum.Duration = time.Since(start) // a failed run ends without its total
	}
	if sum != nil {
		printSummary(opts, sum)
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(io.ErrOut, "Interrupted: run the same command again to continue where it stopped.")
		}
		if sum != nil && len(sum.Remaining) > 0 {
			fmt.Fprintf(io.ErrOut, "To resume (finished databases are left out; passwords shown as xxxxx):\n  %s\n", resumeCommand(opts, eng, sum.Remaining))
		}
		return err
	}
	return nil
}

// resumeCommand is the init command that continues an interrupted run:
// the same flags (an interactive selection echoed as flags), only the
// databases not finished, and --yes.
func resumeCommand(opts *Options, eng replicator.Options, remaining []string) string {
	args := []string{"postgres-seren-replicator", "init"}
	add := func(flag string, vals ...string) {
		for _, v := range vals {
			args = append(args, flag, shellQuote(v))
		}
	}
	if opts.Conn.Source != "" {
		add("--source", eng.Source.String())
	}
	if opts.Conn.Target != "" {
		add("--target", eng.Target.String())
	}
	add("--include-databases", strings.Join(remaining, ","))
	sel := opts.Selection
	if sel.ConfigFile != "" {
		add("--config", sel.ConfigFile)
	}
	add("--include-tables", sel.IncludeTables...)
	add("--exclude-tables", sel.ExcludeTables...)
	add("--schema-only-tables", sel.SchemaOnlyTables...)
	add("--table-filter", sel.TableFilters...)
	add("--time-filter", sel.TimeFilters...)
	add("--jobs", strconv.Itoa(eng.Jobs))
	if opts.NoSync {
		args = append(args, "--no-sync")
	}
	if opts.PgBinDir != "" {
		add("--pg-bin-dir", opts.PgBinDir)
	}
	if opts.Local {
		args = append(args, "--local")
	}
	if opts.Output.JSON() {
		args = append(args, "-o", "json")
	}
	return strings.Join(append(args, "--yes"), " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,/:=@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printEstimate(io *iostreams.IOStreams, est []replicator.DatabaseEstimate, eng replicator.Options) {
	w := tabwriter.NewWriter(io.ErrOut, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "DATABASE\tSIZE\tROUGH ETA\n")
	var total int64
	for _, d := range est {
		total += d.SizeBytes
		fmt.Fprintf(w, "%s\t%s\t%s\n", d.Name, replicator.HumanBytes(d.SizeBytes), roughETA(d.SizeBytes, eng.Jobs))
	}
	fmt.Fprintf(w, "total\t%s\t%s\n", replicator.HumanBytes(total), roughETA(total, eng.Jobs))
	w.Flush()
	fmt.Fprintf(io.ErrOut, "From %s to %s, %d parallel streams, sync afterwards: %v\n", eng.Source, eng.Target, eng.Jobs, !eng.NoSync)
}

// roughETA assumes ~25 MB/s per stream including indexes (a conservative
// figure from scripts/bench.sh on a 2-core machine); it is only a guide.
func roughETA(bytes int64, jobs int) string {
	rate := 25e6 * float64(min(jobs, 8))
	d := time.Duration(float64(bytes)/rate*float64(time.Second)) + 5*time.Second
	return "~" + d.Round(time.Second).String()
}

func printSummary(opts *Options, sum *replicator.InitSummary) {
	io := opts.IO
	if opts.Output.JSON() {
		type phase struct {
			Database string  `json:"database,omitempty"`
			Name     string  `json:"name"`
			Seconds  float64 `json:"seconds"`
			Detail   string  `json:"detail,omitempty"`
		}
		out := struct {
			Databases []string `json:"databases"`
			Tables    int      `json:"tables"`
			Skipped   int      `json:"tables_resumed"`
			Bytes     int64    `json:"bytes"`
			Seconds   float64  `json:"seconds"`
			Phases    []phase  `json:"phases"`
			Warnings  []string `json:"warnings"`
		}{clio.List(sum.Databases), sum.Tables, sum.Skipped, sum.Bytes, sum.Duration.Seconds(), []phase{}, clio.List(sum.Warnings)}
		for _, p := range sum.Phases {
			out.Phases = append(out.Phases, phase{p.Database, p.Name, p.Duration.Seconds(), p.Detail})
		}
		_ = clio.WriteJSON(io.Out, out)
		return
	}
	w := tabwriter.NewWriter(io.ErrOut, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nDATABASE\tPHASE\tWALL TIME\tDETAIL")
	for _, p := range sum.Phases {
		db := p.Database
		if db == "" {
			db = "(server)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", db, p.Name, p.Duration.Round(time.Millisecond), p.Detail)
	}
	fmt.Fprintf(w, "total\t\t%s\t%d databases, %d tables (%d resumed), %s\n", sum.Duration.Round(time.Millisecond),
		len(sum.Databases), sum.Tables, sum.Skipped, replicator.HumanBytes(sum.Bytes))
	w.Flush()
	if len(sum.Warnings) > 0 {
		fmt.Fprintf(io.ErrOut, "%d warnings (see above)\n", len(sum.Warnings))
	}
}

// selectionFlags echoes an interactive selection as command-line flags.
func selectionFlags(opts *Options) string {
	var parts []string
	if len(opts.Selection.IncludeDatabases) > 0 {
		parts = append(parts, "--include-databases "+shellQuote(strings.Join(opts.Selection.IncludeDatabases, ",")))
	}
	if len(opts.Selection.ExcludeTables) > 0 {
		parts = append(parts, "--exclude-tables "+shellQuote(strings.Join(opts.Selection.ExcludeTables, ",")))
	}
	return strings.Join(parts, " ")
}
