// Package verifycmd implements `verify`: compare source and target table
// by table and exit non-zero when anything differs.
package verifycmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/verifier"
)

// rowsShown is how many differing rows of one range the table output lists.
const rowsShown = 5

// Options are the parsed flags of `verify`.
type Options struct {
	IO        *iostreams.IOStreams
	Conn      cmdutil.ConnFlags
	Selection cmdutil.SelectionFlags

	Jobs           int
	Output         clio.Output
	ChunkRows      int64
	MaxRanges      int
	CatchupTimeout time.Duration
	Rechecks       int
}

// New returns the verify command.
func New(ios *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: ios}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare source and target table by table",
		Long: `Compare every selected table of every selected database on the source and the
target: row counts and content hashes computed on the servers, by primary-key
ranges in parallel (tables without a primary key as a whole). Ranges that differ
are narrowed down to the rows that differ.

While continuous sync runs, verify first waits until the subscriber has
confirmed the source's current WAL position, and compares ranges that differ
again after another catch-up before reporting them.

Exit status: 0 identical, 3 a table differs or is missing, 1 error.`,
		Example: `  postgres-seren-replicator verify --source $SRC --target $DST
  postgres-seren-replicator verify --include-databases app --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), opts)
		},
	}
	opts.Conn.Add(cmd)
	opts.Selection.Add(cmd)
	fl := cmd.Flags()
	fl.IntVarP(&opts.Jobs, "jobs", "j", cmdutil.DefaultJobs(), "key ranges compared at once (one connection to each side per job)")
	opts.Output.Add(cmd)
	fl.Int64Var(&opts.ChunkRows, "chunk-rows", verifier.DefaultChunkRows, "rows per key range")
	fl.IntVar(&opts.MaxRanges, "max-ranges", verifier.DefaultMaxRanges, "differing key ranges reported per table")
	clio.DurationVar(fl, &opts.CatchupTimeout, "catchup-timeout", verifier.DefaultCatchupTimeout, "while sync runs, how long to wait for the target to catch up (0: do not wait)")
	fl.IntVar(&opts.Rechecks, "rechecks", verifier.DefaultRechecks, "while sync runs, how often to compare differing ranges again after another catch-up")
	return cmd
}

func run(ctx context.Context, opts *Options) error {
	if err := opts.Output.Check(); err != nil {
		return err
	}
	if opts.Jobs < 1 {
		return clio.Usage(fmt.Errorf("--jobs %d: must be at least 1", opts.Jobs))
	}
	if opts.ChunkRows < 1 || opts.MaxRanges < 1 || opts.Rechecks < 0 || opts.CatchupTimeout < 0 {
		return clio.Usage(errors.New("--chunk-rows and --max-ranges must be at least 1; --rechecks and --catchup-timeout must not be negative"))
	}
	src, dst, rules, err := cmdutil.Parse(&opts.Conn, &opts.Selection)
	if err != nil {
		return err
	}
	if err := cmdutil.CheckSelection(ctx, src, rules, &opts.Selection); err != nil {
		return err
	}
	vo := verifier.Options{
		Source: src, Target: dst, Rules: rules,
		Jobs: opts.Jobs, ChunkRows: opts.ChunkRows, MaxRanges: opts.MaxRanges,
		CatchupTimeout: opts.CatchupTimeout, Rechecks: opts.Rechecks,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(opts.IO.ErrOut, "verify: "+format+"\n", args...)
		},
	}
	if opts.CatchupTimeout == 0 {
		vo.CatchupTimeout = -1
	}
	if opts.Rechecks == 0 {
		vo.Rechecks = -1
	}
	rep, verr := verifier.Verify(ctx, vo, func(r verifier.TableResult) {
		fmt.Fprintf(opts.IO.ErrOut, "verify: %s %s: %s (%s/%s rows, %s)\n", r.Database, r.Name(), statusText(r.Status),
			rows(r.SourceRows), rows(r.TargetRows), duration(r.DurationMS))
	})
	if rep == nil {
		return verr
	}
	if opts.Output.JSON() {
		if err := writeJSON(opts.IO.Out, rep); err != nil {
			return err
		}
	} else if err := writeTable(opts.IO.Out, rep); err != nil {
		return err
	}
	if verr != nil {
		return verr
	}
	if !rep.Identical() {
		s := summarize(rep)
		fix := "the differing tables and key ranges are listed above; copy them again (init --include-tables …) or repair the rows named"
		for _, d := range rep.Databases {
			if len(d.Subscriptions) > 0 {
				fix = "the differing key ranges are listed above; while writes continue on those rows they can differ for a moment: run verify again after they stop (or at cutover)"
			}
		}
		err := fmt.Errorf("%d of %d tables differ", s.Different+s.Missing, s.Tables)
		if len(s.MissingDatabases) > 0 {
			err = fmt.Errorf("%d of %d tables differ; %d database(s) missing on the target", s.Different+s.Missing, s.Tables, len(s.MissingDatabases))
		}
		return &clio.ExitError{Code: clio.ExitProblems, Err: hint.Wrap(err, fix)}
	}
	return nil
}

// summary counts the outcome.
type summary struct {
	Tables     int   `json:"tables"`
	OK         int   `json:"ok"`
	Different  int   `json:"different"`
	Missing    int   `json:"missing"`
	Errors     int   `json:"errors"`
	SourceRows int64 `json:"source_rows"`
	TargetRows int64 `json:"target_rows"`
	// MissingDatabases are databases absent on the target.
	MissingDatabases []string `json:"missing_databases,omitempty"`
}

func summarize(rep *verifier.Report) summary {
	s := summary{
		Tables: len(rep.Tables), OK: rep.Count(verifier.StatusOK), Different: rep.Count(verifier.StatusDifferent),
		Missing: rep.Count(verifier.StatusMissing), Errors: rep.Count(verifier.StatusError),
	}
	for _, t := range rep.Tables {
		s.SourceRows += t.SourceRows
		s.TargetRows += t.TargetRows
	}
	for _, d := range rep.Databases {
		if d.MissingOnTarget {
			s.MissingDatabases = append(s.MissingDatabases, d.Name)
		}
	}
	return s
}

// jsonReport is the --output json contract.
type jsonReport struct {
	Identical bool    `json:"identical"`
	Summary   summary `json:"summary"`
	*verifier.Report
}

func writeJSON(w io.Writer, rep *verifier.Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(jsonReport{Identical: rep.Identical(), Summary: summarize(rep), Report: rep}); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func writeTable(w io.Writer, rep *verifier.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tTABLE\tSOURCE ROWS\tTARGET ROWS\tSTATUS\tTIME")
	for _, t := range rep.Tables {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Database, t.Name(), rows(t.SourceRows), rows(t.TargetRows),
			statusText(t.Status), duration(t.DurationMS))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	var b strings.Builder
	for _, d := range rep.Databases {
		if d.MissingOnTarget {
			fmt.Fprintf(&b, "\n%s: the database does not exist on the target\n", d.Name)
		}
		if len(d.Subscriptions) > 0 && d.CaughtUpLSN != "" {
			fmt.Fprintf(&b, "\n%s: compared after subscription %s caught up with source WAL position %s", d.Name, strings.Join(d.Subscriptions, ", "), d.CaughtUpLSN)
			if d.Rechecks > 0 {
				fmt.Fprintf(&b, "; %d re-check round(s), %d range(s) matched on re-check", d.Rechecks, d.Settled)
			}
			b.WriteString("\n")
		}
		for _, n := range d.Notes {
			fmt.Fprintf(&b, "\n%s: %s\n", d.Name, n)
		}
	}
	for _, t := range rep.Tables {
		if t.Status == verifier.StatusOK && len(t.Notes) == 0 {
			continue
		}
		if t.Status == verifier.StatusOK && t.Method == verifier.MethodSchemaOnly {
			continue
		}
		fmt.Fprintf(&b, "\n%s %s: %s", t.Database, t.Name(), statusText(t.Status))
		if len(t.KeyColumns) > 0 && len(t.Ranges) > 0 {
			fmt.Fprintf(&b, " (key %s)", strings.Join(t.KeyColumns, ", "))
		}
		b.WriteString("\n")
		if t.Predicate != "" {
			fmt.Fprintf(&b, "  rows compared: %s\n", t.Predicate)
		}
		if t.Error != "" {
			fmt.Fprintf(&b, "  error: %s\n", t.Error)
		}
		for _, r := range t.Ranges {
			fmt.Fprintf(&b, "  %s: %s on the source, %s on the target\n", verifier.FormatRange(t.KeyColumns, r), plural(r.SourceRows, "row"), rows(r.TargetRows))
			for i, row := range r.Rows {
				if i == rowsShown && len(r.Rows) > rowsShown+1 {
					fmt.Fprintf(&b, "    … and %d more (--output json lists them)\n", len(r.Rows)-rowsShown)
					break
				}
				fmt.Fprintf(&b, "    %s %s\n", verifier.FormatKey(t.KeyColumns, row.Key), rowKind(row.Kind))
			}
		}
		if t.RangesOmitted > 0 {
			fmt.Fprintf(&b, "  … and %d more differing range(s) (raise --max-ranges to list them)\n", t.RangesOmitted)
		}
		for _, n := range t.Notes {
			fmt.Fprintf(&b, "  note: %s\n", n)
		}
	}
	s := summarize(rep)
	b.WriteString("\n")
	switch {
	case rep.Identical():
		fmt.Fprintf(&b, "Identical: %d table(s), %s rows compared in %s.\n", s.Tables, rows(s.SourceRows), duration(rep.DurationMS))
	default:
		var parts []string
		if s.Different > 0 {
			parts = append(parts, fmt.Sprintf("%d different", s.Different))
		}
		if s.Missing > 0 {
			parts = append(parts, fmt.Sprintf("%d missing", s.Missing))
		}
		if s.Errors > 0 {
			parts = append(parts, fmt.Sprintf("%d not compared (error)", s.Errors))
		}
		if len(s.MissingDatabases) > 0 {
			parts = append(parts, fmt.Sprintf("%d database(s) missing", len(s.MissingDatabases)))
		}
		fmt.Fprintf(&b, "NOT identical: %s; %d of %d table(s) ok (%s).\n", strings.Join(parts, ", "), s.OK, s.Tables, duration(rep.DurationMS))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func statusText(s verifier.Status) string {
	if s == verifier.StatusOK {
		return "ok"
	}
	return strings.ToUpper(string(s))
}

func rowKind(k string) string {
	switch k {
	case verifier.RowMissing:
		return "missing on the target"
	case verifier.RowExtra:
		return "only on the target"
	case verifier.RowChanged:
		return "differs"
	}
	return k
}

// plural is "1 row", "2 rows", "1,000 rows".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return rows(n) + " " + noun + "s"
}

// rows formats a count with thousands separators.
func rows(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func duration(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d < time.Second:
		return d.String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
