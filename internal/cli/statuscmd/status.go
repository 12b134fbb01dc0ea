// Package statuscmd implements `status`: per database the subscription
// state, tables not yet ready, lag in bytes and seconds and the last
// message times; a table on a terminal, JSON for scripts, --watch to
// refresh.
package statuscmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Options are the parsed flags of `status`.
type Options struct {
	IO        *iostreams.IOStreams
	Conn      cmdutil.ConnFlags
	Selection cmdutil.SelectionFlags

	Output   clio.Output
	Watch    bool
	Interval time.Duration
	// Now is the clock for "ago" columns (time.Now when nil).
	Now func() time.Time
	// Refreshes stops --watch after this many refreshes (0: until interrupted; tests).
	Refreshes int
}

// New returns the status command.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the state and lag of continuous sync per database",
		Long: `status shows, for every selected database, the state of its subscription
(streaming, syncing-tables, disabled, down, broken, no-subscription, not-set-up),
the tables not yet ready, the lag in bytes (the source's WAL position minus what
the subscriber has confirmed) and in seconds, and when the subscriber last heard
from the source. A state other than streaming comes with what to do.

--output json prints the same as a JSON array (one compact array per refresh
with --watch).`,
		Example: `  postgres-seren-replicator status --source "$SRC" --target "$DST"
  postgres-seren-replicator status --watch --interval 5s
  postgres-seren-replicator status -o json | jq '.[] | select(.lag_bytes > 1e6)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), opts)
		},
	}
	opts.Conn.Add(cmd)
	opts.Selection.Add(cmd)
	fl := cmd.Flags()
	opts.Output.Add(cmd)
	fl.BoolVarP(&opts.Watch, "watch", "w", false, "refresh until interrupted")
	clio.DurationVar(fl, &opts.Interval, "interval", 2*time.Second, "refresh interval with --watch")
	return cmd
}

func run(ctx context.Context, opts *Options) error {
	if err := opts.Output.Check(); err != nil {
		return err
	}
	if opts.Watch && opts.Interval < 100*time.Millisecond {
		return clio.Usage(fmt.Errorf("--interval %s: must be at least 100ms", opts.Interval))
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
	c := &collector{src: src, dst: dst, dsts: map[string]*pgx.Conn{}}
	defer c.close()

	var tick *time.Ticker
	if opts.Watch {
		tick = time.NewTicker(opts.Interval)
		defer tick.Stop()
	}
	for i := 1; ; i++ {
		sts, err := c.collect(ctx, dbs)
		if err != nil {
			if !opts.Watch || ctx.Err() != nil {
				return err
			}
			// Keep watching through a restart of either server.
			fmt.Fprintf(opts.IO.ErrOut, "status: %v (retrying)\n", err)
			c.close()
		} else if err := show(opts, sts); err != nil {
			return err
		}
		if !opts.Watch {
			return unhealthy(sts)
		}
		if opts.Refreshes > 0 && i >= opts.Refreshes {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // interrupting --watch is the normal way out
		case <-tick.C:
		}
	}
}

// unhealthy returns an error with exit code 3 when a set is down or
// broken, so monitoring can alert on the exit status.
func unhealthy(sts []*logical.Status) error {
	var bad []string
	for _, s := range sts {
		if s.State == logical.StateDown || s.State == logical.StateBroken {
			bad = append(bad, s.Database+" is "+s.State)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return clio.WithCode(clio.ExitProblems, hint.Wrap(fmt.Errorf("replication not healthy: %s", strings.Join(bad, ", ")),
		"see the problems listed above; a broken set needs a fresh init of that database"))
}

// collector keeps connections open across refreshes.
type collector struct {
	src, dst pg.URL
	srcConn  *pgx.Conn
	dsts     map[string]*pgx.Conn // nil value: database missing on the target
}

func (c *collector) close() {
	if c.srcConn != nil {
		c.srcConn.Close(context.Background())
		c.srcConn = nil
	}
	for db, d := range c.dsts {
		if d != nil {
			d.Close(context.Background())
		}
		delete(c.dsts, db)
	}
}

func (c *collector) collect(ctx context.Context, dbs []string) ([]*logical.Status, error) {
	var err error
	if c.srcConn == nil {
		// Slots, WAL positions and senders are server-wide: one connection.
		if c.srcConn, err = pg.Connect(ctx, logical.AdminURL(c.src), "source"); err != nil {
			return nil, err
		}
	}
	out := make([]*logical.Status, 0, len(dbs))
	for _, db := range dbs {
		d, ok := c.dsts[db]
		if !ok {
			if d, err = logical.ConnectIfExists(ctx, c.dst.WithDatabase(db), "target"); err != nil {
				return nil, err
			}
			c.dsts[db] = d
		}
		n, err := logical.ResolveNames(ctx, c.dst.WithDatabase(db), d, db)
		if err != nil {
			return nil, fmt.Errorf("database %s: %w", db, err)
		}
		st, err := logical.GetStatus(ctx, c.srcConn, d, db, n)
		if err != nil {
			return nil, fmt.Errorf("database %s: %w", db, err)
		}
		out = append(out, st)
	}
	return out, nil
}

func show(opts *Options, sts []*logical.Status) error {
	w := opts.IO.Out
	if opts.Output.JSON() {
		enc := json.NewEncoder(w)
		if !opts.Watch {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(sts)
	}
	if opts.Watch && opts.IO.IsStdoutTTY() {
		fmt.Fprint(w, "\x1b[H\x1b[2J") // home and clear: redraw in place
		fmt.Fprintf(w, "Every %s · %s\n\n", opts.Interval, opts.Now().Format("15:04:05"))
	}
	return writeTable(w, sts, opts.Now())
}

func writeTable(w io.Writer, sts []*logical.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tSTATE\tTABLES\tNOT READY\tLAG\tLAG TIME\tLAST MESSAGE\tCONFIRMED LSN")
	for _, s := range sts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", s.Database, s.State, s.Tables, len(s.TablesNotReady),
			humanBytes(s.LagBytes), seconds(s.LagSeconds), ago(s.LastMsgReceiptTime, now), dash(s.ConfirmedLSN))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sts {
		for _, t := range s.TablesNotReady[:min(len(s.TablesNotReady), 10)] {
			fmt.Fprintf(w, "%s: table %s is %s\n", s.Database, t.Table, t.State)
		}
		if len(s.TablesNotReady) > 10 {
			fmt.Fprintf(w, "%s: and %d more tables not ready\n", s.Database, len(s.TablesNotReady)-10)
		}
		for _, p := range s.Problems {
			fmt.Fprintf(w, "%s: %s\n", s.Database, p)
		}
		for _, o := range s.OtherSets {
			state := "inactive"
			if o.Active {
				state = "active"
			}
			fmt.Fprintf(w, "%s: another replication set on the source (another target's, or an older run's): slot %s, %s%s\n", s.Database, o.Slot, state, pairNote(o.Pair))
		}
	}
	return nil
}

func pairNote(p string) string {
	if p == "" {
		return ""
	}
	return " (" + p + ")"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(b *int64) string {
	if b == nil {
		return "-"
	}
	v := float64(*b)
	for _, u := range []string{"B", "kB", "MB", "GB", "TB"} {
		if v < 1024 || u == "TB" {
			if u == "B" {
				return fmt.Sprintf("%d B", *b)
			}
			return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + u
		}
		v /= 1024
	}
	return ""
}

func seconds(s *float64) string {
	if s == nil {
		return "-"
	}
	return (time.Duration(*s * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func ago(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := now.Sub(*t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}
