// Package validatecmd implements `validate`: every problem that would make
// init or sync fail or lose data, each with the exact fix; exit status 3
// when anything blocks.
package validatecmd

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
)

// Options are the parsed flags of `validate`.
type Options struct {
	IO        *iostreams.IOStreams
	Conn      cmdutil.ConnFlags
	Selection cmdutil.SelectionFlags

	NoSync bool
	Output clio.Output
}

// New returns the validate command.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check both servers for everything that would make init or sync fail or lose data",
		Long: `validate checks the source, the target and every selected database, and prints
each problem with its fix (the SQL to run or the setting to change):

  source: wal_level, free replication slots and WAL senders, the REPLICATION
          privilege (or rds_replication), read access and ownership of tables,
          row filters that PostgreSQL would refuse;
  tables: no primary key or replica identity (UPDATE/DELETE would fail once
          published), unlogged tables; large objects and sequences (not carried
          by logical replication; cutover copies sequences);
  target: major version (never older than the source), privileges to create
          databases and subscriptions, apply workers, extensions.

Blockers stop init or sync; warnings limit what they can promise. With --no-sync
only what the copy needs is checked.

Exit status: 0 nothing blocks, 3 at least one blocker, 1 the check failed.`,
		Example: `  postgres-seren-replicator validate --source "$SRC" --target "$DST"
  postgres-seren-replicator validate --include-databases app -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), opts)
		},
	}
	opts.Conn.Add(cmd)
	opts.Selection.Add(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&opts.NoSync, "no-sync", false, "check only what a copy without continuous sync needs")
	opts.Output.Add(cmd)
	return cmd
}

func run(ctx context.Context, opts *Options) error {
	if err := opts.Output.Check(); err != nil {
		return err
	}
	src, dst, rules, err := cmdutil.Parse(&opts.Conn, &opts.Selection)
	if err != nil {
		return err
	}
	if err := cmdutil.CheckSelection(ctx, src, rules, &opts.Selection); err != nil {
		return err
	}
	ps, err := logical.Validate(ctx, logical.ValidateOptions{Source: src, Target: dst, Rules: rules, NoSync: opts.NoSync})
	if err != nil {
		return err
	}
	if opts.Output.JSON() {
		if ps == nil {
			ps = []logical.Problem{}
		}
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ps); err != nil {
			return err
		}
	} else if err := cmdutil.WriteProblems(opts.IO.Out, ps, opts.IO.ColorOut()); err != nil {
		return err
	}
	blockers, warnings := 0, 0
	for _, p := range ps {
		if p.Severity == logical.Blocker {
			blockers++
		} else {
			warnings++
		}
	}
	if blockers > 0 {
		return &clio.ExitError{Code: clio.ExitProblems, Err: hint.Wrap(
			fmt.Errorf("%d blocking problem(s) and %d warning(s): init/sync would fail", blockers, warnings),
			"apply each fix listed above, then run validate again")}
	}
	if warnings > 0 {
		fmt.Fprintf(opts.IO.ErrOut, "validate: nothing blocks; %d warning(s) above say what sync cannot carry\n", warnings)
	} else {
		fmt.Fprintln(opts.IO.ErrOut, "validate: no problems found")
	}
	return nil
}
