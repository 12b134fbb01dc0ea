// Package cutovercmd implements `cutover`: wait until the target has
// applied everything, copy sequence values, drop the subscription, the
// publication and the slot, and say how long writes had to pause.
package cutovercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Options are the parsed flags of `cutover`.
type Options struct {
	IO        *iostreams.IOStreams
	Conn      cmdutil.ConnFlags
	Selection cmdutil.SelectionFlags

	Timeout     time.Duration
	DryRun      bool
	BlockWrites bool
	SkipWait    bool
	Yes         bool
	Output      clio.Output
	// Now is the clock the pause is measured with (time.Now when nil).
	Now func() time.Time
}

// New returns the cutover command.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "cutover",
		Short: "Finish sync: wait for zero lag, copy sequences, drop subscription, publication and slot",
		Long: `cutover ends continuous sync so the application can move to the target. For
every selected database it

  1. (with --block-writes) makes the source database read-only for new sessions
     and ends its open client sessions;
  2. waits until the subscriber has applied everything committed on the source
     (at most --timeout);
  3. copies sequence values to the target (logical replication does not carry
     them; a target sequence already further along is kept);
  4. drops the subscription on the target, and the slot and the publication on
     the source, so nothing on the source retains WAL for us.

Stop the application's writes to the source first (or pass --block-writes):
anything written after step 2 is not carried over. cutover prints how long
writes had to pause. --dry-run changes nothing and shows the steps and the
current lag.

--block-writes runs ALTER DATABASE … SET default_transaction_read_only = on and
terminates the database's client sessions (not WAL senders); superusers can
still override it per session. It stays in force after cutover; undo it with
ALTER DATABASE … RESET default_transaction_read_only. If cutover fails, it is
undone for the databases not yet cut over.`,
		Example: `  postgres-seren-replicator cutover --source "$SRC" --target "$DST" --dry-run
  postgres-seren-replicator cutover --source "$SRC" --target "$DST" --block-writes --timeout 2m --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), opts)
		},
	}
	opts.Conn.Add(cmd)
	opts.Selection.Add(cmd)
	fl := cmd.Flags()
	clio.DurationVar(fl, &opts.Timeout, "timeout", 5*time.Minute, "how long to wait for the target to catch up, per database")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "show the steps and the current lag; change nothing")
	fl.BoolVar(&opts.BlockWrites, "block-writes", false, "make the source databases read-only and end their client sessions first")
	fl.BoolVar(&opts.SkipWait, "skip-wait", false, "do not wait for the target to catch up (for a broken set-up: copy sequences and drop what is left)")
	fl.BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	opts.Output.Add(cmd)
	return cmd
}

// Result is the JSON output of one database.
type Result struct {
	Database          string   `json:"database"`
	NothingToDo       bool     `json:"nothing_to_do,omitempty"`
	SequencesCopied   int      `json:"sequences_copied"`
	SequencesKept     []string `json:"sequences_kept,omitempty"`
	SequencesMissing  []string `json:"sequences_missing,omitempty"`
	CatchUpSeconds    float64  `json:"catch_up_seconds"`
	SequencesSeconds  float64  `json:"sequences_seconds"`
	TeardownSeconds   float64  `json:"teardown_seconds"`
	WritesBlocked     bool     `json:"writes_blocked"`
	WritePauseSeconds float64  `json:"write_pause_seconds"`
}

func run(ctx context.Context, opts *Options) error {
	io := opts.IO
	if err := opts.Output.Check(); err != nil {
		return err
	}
	if opts.Timeout <= 0 {
		return clio.Usage(fmt.Errorf("--timeout %s: must be positive", opts.Timeout))
	}
	if opts.SkipWait && opts.BlockWrites {
		return clio.Usage(errors.New("--skip-wait and --block-writes do not go together: --skip-wait is for a set-up that can no longer catch up"))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	src, dst, rules, err := cmdutil.Parse(&opts.Conn, &opts.Selection)
	if err != nil {
		return err
	}
	dbs, err := logical.Databases(ctx, src, rules)
	if err != nil {
		return err
	}
	admin, err := pg.Connect(ctx, logical.AdminURL(src), "source")
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))

	if opts.DryRun {
		return dryRun(ctx, opts, admin, dst, dbs)
	}
	if !opts.Yes {
		if !io.CanPrompt() {
			return clio.Usage(errors.New("cutover ends sync and needs confirmation, but there is no terminal to ask on: pass --yes (or --dry-run to see the steps)"))
		}
		q := fmt.Sprintf("End sync for %s? Writes to the source must have stopped", strings.Join(dbs, ", "))
		if opts.BlockWrites {
			q = fmt.Sprintf("Make %s read-only on the source and end sync?", strings.Join(dbs, ", "))
		}
		ok, err := io.Confirm(ctx, q)
		if err != nil {
			return err
		}
		if !ok {
			return clio.ErrDeclined
		}
	}

	start := opts.Now()
	blocked := map[string]bool{}
	if opts.BlockWrites {
		for _, db := range dbs {
			n, err := logical.BlockWrites(ctx, admin, db)
			if err != nil {
				unblock(ctx, io.ErrOut, admin, blocked)
				return err
			}
			blocked[db] = true
			fmt.Fprintf(io.ErrOut, "cutover: %s: source is read-only for new sessions; ended %d client session(s)\n", db, n)
		}
	} else {
		fmt.Fprintln(io.ErrOut, "cutover: assuming the application has stopped writing to the source (else pass --block-writes)")
	}

	var results []Result
	for _, db := range dbs {
		r, err := cutoverOne(ctx, opts, src.WithDatabase(db), dst.WithDatabase(db), db)
		if err != nil {
			if len(blocked) > 0 {
				unblock(ctx, io.ErrOut, admin, blocked)
			}
			if len(results) > 0 {
				var done []string
				for _, r := range results {
					done = append(done, r.Database)
				}
				fmt.Fprintf(io.ErrOut, "cutover: already cut over: %s\n", strings.Join(done, ", "))
			}
			return err
		}
		delete(blocked, db) // cut over: stays read-only
		r.WritesBlocked = opts.BlockWrites
		results = append(results, *r)
	}
	pause := opts.Now().Sub(start)
	for i := range results {
		results[i].WritePauseSeconds = pause.Seconds()
	}
	if opts.Output.JSON() {
		return clio.WriteJSON(io.Out, clio.List(results))
	}
	for _, r := range results {
		if r.NothingToDo {
			fmt.Fprintf(io.Out, "%s: nothing to cut over (no subscription, slot or publication of ours)\n", r.Database)
			continue
		}
		fmt.Fprintf(io.Out, "%s: caught up in %s, %d sequence(s) copied in %s, replication removed in %s\n",
			r.Database, secs(r.CatchUpSeconds), r.SequencesCopied, secs(r.SequencesSeconds), secs(r.TeardownSeconds))
		if len(r.SequencesKept) > 0 {
			fmt.Fprintf(io.Out, "%s: target already ahead, kept: %s\n", r.Database, strings.Join(r.SequencesKept, ", "))
		}
		if len(r.SequencesMissing) > 0 {
			fmt.Fprintf(io.Out, "%s: sequences missing on the target (not copied): %s\n", r.Database, strings.Join(r.SequencesMissing, ", "))
		}
	}
	fmt.Fprintf(io.Out, "Writes had to pause for %s (from the start of cutover until now). Point the application at the target now.\n",
		pause.Round(10*time.Millisecond))
	if opts.BlockWrites {
		var resets []string
		for _, db := range dbs {
			resets = append(resets, "ALTER DATABASE "+pg.Ident(db)+" RESET default_transaction_read_only;")
		}
		fmt.Fprintf(io.Out, "The source stays read-only; to allow writes there again: %s\n", strings.Join(resets, " "))
	}
	return nil
}

func cutoverOne(ctx context.Context, opts *Options, srcURL, dstURL pg.URL, db string) (*Result, error) {
	s, err := pg.Connect(ctx, srcURL, "source")
	if err != nil {
		return nil, err
	}
	defer s.Close(context.WithoutCancel(ctx))
	// With --block-writes new sessions default to read-only; ours must
	// still drop the publication and the slot.
	if _, err := s.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
		return nil, fmt.Errorf("source database %s: %w", db, err)
	}
	d, err := logical.ConnectIfExists(ctx, dstURL, "target")
	if err != nil {
		return nil, err
	}
	if d != nil {
		defer d.Close(context.WithoutCancel(ctx))
		if err := pg.RefuseSameServer(ctx, s, d, srcURL, dstURL); err != nil {
			return nil, err
		}
	}
	var cr *logical.CutoverResult
	switch {
	case opts.SkipWait:
		var n logical.ObjectNames
		if n, err = logical.ResolveNames(ctx, dstURL, d, db); err != nil {
			return nil, err
		}
		cr, err = logical.ForceTeardown(ctx, s, d, db, n)
	case d == nil:
		return nil, fmt.Errorf("database %s does not exist on the target: nothing to cut over to", db)
	default:
		fmt.Fprintf(opts.IO.ErrOut, "cutover: %s: waiting for the target to catch up (at most %s)\n", db, opts.Timeout)
		cr, err = logical.Cutover(ctx, s, d, db, opts.Timeout, opts.Now)
	}
	if err != nil {
		return nil, err
	}
	return &Result{
		Database: db, NothingToDo: cr.NothingToDo,
		SequencesCopied: cr.Sequences.Copied, SequencesKept: cr.Sequences.Kept, SequencesMissing: cr.Sequences.Missing,
		CatchUpSeconds: cr.CatchUp.Seconds(), SequencesSeconds: cr.CopySeqs.Seconds(), TeardownSeconds: cr.Teardown.Seconds(),
	}, nil
}

func unblock(ctx context.Context, w io.Writer, admin pg.Querier, blocked map[string]bool) {
	ctx = context.WithoutCancel(ctx)
	for db := range blocked {
		if err := logical.UnblockWrites(ctx, admin, db); err != nil {
			fmt.Fprintf(w, "cutover: %v: run ALTER DATABASE %s RESET default_transaction_read_only;\n", err, pg.Ident(db))
			continue
		}
		fmt.Fprintf(w, "cutover: %s: writes to the source allowed again (not cut over)\n", db)
	}
}

// Plan is the JSON output of --dry-run.
type Plan struct {
	DryRun    bool         `json:"dry_run"`
	Steps     []string     `json:"steps"`
	Databases []PlannedSet `json:"databases"`
	// PauseSeconds is the current worst lag: writes would pause about this
	// long plus a few seconds per database.
	PauseSeconds float64 `json:"estimated_pause_seconds"`
}

// PlannedSet is one database of a dry run.
type PlannedSet struct {
	Database     string   `json:"database"`
	State        string   `json:"state"`
	LagBytes     *int64   `json:"lag_bytes"`
	LagSeconds   *float64 `json:"lag_seconds"`
	Subscription string   `json:"subscription"`
	Slot         string   `json:"slot"`
	Publication  string   `json:"publication"`
	Problems     []string `json:"problems"`
}

func dryRun(ctx context.Context, opts *Options, admin pg.Querier, dst pg.URL, dbs []string) error {
	plan := Plan{DryRun: true, Databases: []PlannedSet{}}
	if opts.BlockWrites {
		plan.Steps = append(plan.Steps, "on the source: ALTER DATABASE <db> SET default_transaction_read_only = on, and end the database's client sessions")
	} else {
		plan.Steps = append(plan.Steps, "(you) stop the application's writes to the source")
	}
	if !opts.SkipWait {
		plan.Steps = append(plan.Steps, fmt.Sprintf("wait until each subscription has applied everything committed on the source (at most %s per database)", opts.Timeout))
	}
	plan.Steps = append(plan.Steps,
		"copy sequence values from source to target (setval; never moving a target sequence back)",
		"on the target: disable the subscription, detach it from its slot, drop it; on the source: drop the slot and the publication")
	for _, db := range dbs {
		d, err := logical.ConnectIfExists(ctx, dst.WithDatabase(db), "target")
		if err != nil {
			return err
		}
		n, err := logical.ResolveNames(ctx, dst.WithDatabase(db), d, db)
		if err != nil {
			if d != nil {
				d.Close(ctx)
			}
			return err
		}
		st, err := logical.GetStatus(ctx, admin, d, db, n)
		if d != nil {
			d.Close(ctx)
		}
		if err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
		if st.LagSeconds != nil {
			plan.PauseSeconds = max(plan.PauseSeconds, *st.LagSeconds)
		}
		plan.Databases = append(plan.Databases, PlannedSet{Database: db, State: st.State, LagBytes: st.LagBytes, LagSeconds: st.LagSeconds,
			Subscription: n.Subscription, Slot: n.Slot, Publication: n.Publication, Problems: clio.List(st.Problems)})
	}
	if opts.Output.JSON() {
		return clio.WriteJSON(opts.IO.Out, plan)
	}
	w := opts.IO.Out
	fmt.Fprintln(w, "Dry run: nothing is changed. cutover would, in this order:")
	for i, s := range plan.Steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s)
	}
	fmt.Fprintln(w)
	for _, p := range plan.Databases {
		lag := "unknown"
		if p.LagBytes != nil {
			lag = fmt.Sprintf("%d bytes", *p.LagBytes)
		}
		if p.LagSeconds != nil {
			lag += fmt.Sprintf(" (%s)", secs(*p.LagSeconds))
		}
		fmt.Fprintf(w, "%s: %s, lag %s; would drop subscription %s (target), slot %s and publication %s (source)\n",
			p.Database, p.State, lag, p.Subscription, p.Slot, p.Publication)
		for _, pr := range p.Problems {
			fmt.Fprintf(w, "%s: %s\n", p.Database, pr)
		}
	}
	fmt.Fprintf(w, "\nWrites would pause for about the time the target needs to catch up (now %s) plus a few seconds per database.\n", secs(plan.PauseSeconds))
	return nil
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(10 * time.Millisecond).String()
}
