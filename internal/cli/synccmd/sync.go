// Package synccmd implements `sync`: set up (or check, or with --force
// recreate) continuous logical replication into a target that already
// holds the data.
package synccmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
)

// Options are the parsed flags of `sync`.
type Options struct {
	IO        *iostreams.IOStreams
	Conn      cmdutil.ConnFlags
	Selection cmdutil.SelectionFlags
	Sub       cmdutil.SubFlags

	Force  bool
	Yes    bool
	Output clio.Output
}

// New returns the sync command.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Set up continuous replication into a target that already holds the data",
		Long: `sync creates, for every selected database, a publication and a logical
replication slot on the source and a subscription on the target that streams
every change from now on. Use it when the target already holds the data (copied
earlier, by init --no-sync or by hand); init sets up sync by itself.

Re-running sync is harmless: what is in place is kept (a disabled subscription
is re-enabled). sync refuses, and says why, when the target cannot be made
consistent without a fresh copy (for example a slot whose subscription was
dropped, or tables that are empty on the target). --force drops what exists and
starts again from the source's current position.

Replication starts from now: the target must already hold every row committed
on the source until now. Run verify once status shows zero lag.`,
		Example: `  postgres-seren-replicator sync --source "$SRC" --target "$DST"
  SEREN_SUBSCRIPTION_PASSWORD=… postgres-seren-replicator sync --subscription-user replicator
  postgres-seren-replicator sync --subscription-password passfile --subscription-passfile /var/lib/postgresql/.pgpass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), opts)
		},
	}
	opts.Conn.Add(cmd)
	opts.Selection.Add(cmd)
	opts.Sub.AddTo(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&opts.Force, "force", false, "drop existing publication, slot and subscription and set them up afresh")
	fl.BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation (--force)")
	opts.Output.Add(cmd)
	return cmd
}

func run(ctx context.Context, opts *Options) error {
	io := opts.IO
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
	sub, err := opts.Sub.Options()
	if err != nil {
		return err
	}
	dbs, err := logical.Databases(ctx, src, rules)
	if err != nil {
		return err
	}
	if opts.Force && !opts.Yes {
		if !io.CanPrompt() {
			return clio.Usage(errors.New("--force drops the existing replication set-up and needs confirmation, but there is no terminal to ask on: pass --yes"))
		}
		ok, err := io.Confirm(ctx, fmt.Sprintf("Drop and recreate replication for %d database(s) (%v)?", len(dbs), dbs))
		if err != nil {
			return err
		}
		if !ok {
			return clio.ErrDeclined
		}
	}
	var results []*logical.SyncResult
	var errs []error
	for _, db := range dbs {
		fmt.Fprintf(io.ErrOut, "sync: %s: ", db)
		res, err := logical.SyncDatabase(ctx, src.WithDatabase(db), dst.WithDatabase(db), db,
			logical.SyncOptions{Rules: rules, Force: opts.Force, Sub: sub})
		if err != nil {
			fmt.Fprintln(io.ErrOut, "failed")
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		fmt.Fprintln(io.ErrOut, res.Action)
		for _, n := range res.Notes {
			fmt.Fprintf(io.ErrOut, "sync: %s: note: %s\n", db, n)
		}
		results = append(results, res)
	}
	if opts.Output.JSON() {
		if results == nil {
			results = []*logical.SyncResult{}
		}
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else if len(results) > 0 {
		w := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "DATABASE\tACTION\tSUBSCRIPTION\tSTART LSN")
		for _, r := range results {
			lsn := r.StartLSN
			if lsn == "" {
				lsn = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Database, r.Action, r.Subscription, lsn)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	switch len(errs) {
	case 0:
		if len(results) > 0 {
			fmt.Fprintln(io.ErrOut, "sync: follow progress with `postgres-seren-replicator status`; check with `verify` once the lag is zero")
		}
		return nil
	case 1:
		return errs[0]
	}
	return fmt.Errorf("sync failed for %d of %d databases: %w", len(errs), len(dbs), errors.Join(errs...))
}
