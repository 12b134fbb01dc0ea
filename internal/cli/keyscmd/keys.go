// Package keyscmd implements `keys create|list|revoke`: the API keys of
// the embedded job service, stored hashed in its SQLite file. Several keys
// can be active at once, so a key is rotated by creating the new one,
// switching clients over, then revoking the old one.
package keyscmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

// Options are the parsed flags of `keys`.
type Options struct {
	IO      *iostreams.IOStreams
	DataDir string
	Name    string
	Output  clio.Output
	// Principal and Operator: create's --principal and --operator.
	Principal string
	Operator  bool
	// CancelJobs: revoke's --cancel-jobs.
	CancelJobs bool
	Now        func() time.Time
}

// New returns the keys command with its subcommands.
func New(io *iostreams.IOStreams) *cobra.Command {
	opts := &Options{IO: io}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list and revoke API keys of the embedded job service",
		Long: `keys manages the API keys of the job service that serve runs on this machine.
A key's secret is printed once, by create, and stored only as a hash. Several
keys may be active at once: to rotate, create a new key, move clients to it,
then revoke the old one. Revocation takes effect at once, even while serve runs.

Every key belongs to a principal (--principal, default the key's name). Jobs
belong to the principal, not to the key: all its keys, and the keys that
replace them, see and cancel the same jobs. An --operator key may also read,
list (GET /jobs?principal=NAME) and cancel the jobs of every principal.`,
		Args: cobra.NoArgs,
	}
	opts.Output.AddPersistent(cmd)
	cmd.PersistentFlags().StringVar(&opts.DataDir, "data-dir", "", "the service's data directory (default $"+backends.EnvDataDir+" or "+backends.DefaultDataDir()+")")

	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create a key and print its secret (shown only this once) as the last line",
		Example: `  postgres-seren-replicator keys create --data-dir /var/lib/seren --name ci
  export SEREN_API_KEY=$(postgres-seren-replicator keys create --name me | tail -n1)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runCreate(cmd.Context(), opts) },
	}
	create.Flags().StringVar(&opts.Name, "name", "", "a name for the key (letters, digits, . _ -), unique among active keys")
	create.Flags().StringVar(&opts.Principal, "principal", "", "the principal the key belongs to and whose jobs it sees (default: --name)")
	create.Flags().BoolVar(&opts.Operator, "operator", false, "an operator key: may read, list and cancel every principal's jobs")

	list := &cobra.Command{
		Use:   "list",
		Short: "List keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return runList(cmd.Context(), opts) },
	}

	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke the active key named NAME",
		Long: `revoke revokes the active key named NAME at once. With --cancel-jobs, when it
was its principal's last active key, the principal's provisioning and running
jobs are cancelled too (their workers stop). Jobs belong to the principal, so
while another key of the principal is active they keep running.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			return runRevoke(cmd.Context(), opts)
		},
	}
	revoke.Flags().BoolVar(&opts.CancelJobs, "cancel-jobs", false, "when this is the principal's last active key, cancel the principal's active jobs")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func config(opts *Options) backends.Config {
	return backends.FromEnv(backends.Config{Backend: backends.Embedded, DataDir: opts.DataDir, Now: opts.Now})
}

func open(ctx context.Context, opts *Options) (*backends.Set, error) {
	return openParts(ctx, opts, backends.ForKeys)
}

func openParts(ctx context.Context, opts *Options, parts backends.Parts) (*backends.Set, error) {
	return backends.Open(ctx, config(opts), parts)
}

// exists reports whether the data directory holds a service database:
// list and revoke only read, and must not create one (under $HOME when
// --data-dir is not given).
func exists(opts *Options) (string, bool) {
	dir := config(opts).DataDir
	_, err := os.Stat(filepath.Join(dir, sqlitedb.FileName))
	return dir, err == nil
}

func runCreate(ctx context.Context, opts *Options) error {
	if err := opts.Output.Check(); err != nil {
		return err
	}
	if opts.Name == "" {
		return clio.Usage(errors.New("--name is required"))
	}
	set, err := open(ctx, opts)
	if err != nil {
		return err
	}
	defer set.Close()
	secret, err := set.KeyManager.Create(ctx, opts.Name, apikeys.CreateOptions{Principal: opts.Principal, Operator: opts.Operator})
	if err != nil {
		if errors.Is(err, apikeys.ErrNameTaken) {
			return hint.Wrap(fmt.Errorf("key name %q: %w", opts.Name, apikeys.ErrNameTaken),
				fmt.Sprintf("choose another name, or revoke the old key first: keys revoke %s", opts.Name))
		}
		return fmt.Errorf("create key %s: %w", opts.Name, err)
	}
	principal := opts.Principal
	if principal == "" {
		principal = opts.Name
	}
	role := ""
	if opts.Operator {
		role = ", an operator key (every principal's jobs)"
	}
	fmt.Fprintf(opts.IO.ErrOut, "Created API key %q of principal %q%s in %s. Its secret is shown only now; clients send it as x-api-key (SEREN_API_KEY):\n",
		opts.Name, principal, role, set.DataDir)
	if opts.Output.JSON() {
		return clio.WriteJSON(opts.IO.Out, struct {
			Name      string `json:"name"`
			Principal string `json:"principal"`
			Operator  bool   `json:"operator"`
			Key       string `json:"key"`
		}{opts.Name, principal, opts.Operator, secret})
	}
	fmt.Fprintln(opts.IO.Out, secret)
	return nil
}

// keyView is one key of `keys list -o json`: every column of the table.
type keyView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Principal  string     `json:"principal"`
	Operator   bool       `json:"operator"`
	Status     string     `json:"status"` // active or revoked
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func runList(ctx context.Context, opts *Options) error {
	if err := opts.Output.Check(); err != nil {
		return err
	}
	if dir, ok := exists(opts); !ok {
		if opts.Output.JSON() {
			return clio.WriteJSON(opts.IO.Out, []keyView{})
		}
		fmt.Fprintf(opts.IO.ErrOut, "No API keys: no service data in %s (pass --data-dir, or create one with: postgres-seren-replicator keys create --name NAME)\n", dir)
		return nil
	}
	set, err := open(ctx, opts)
	if err != nil {
		return err
	}
	defer set.Close()
	keys, err := set.KeyManager.List(ctx)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if opts.Output.JSON() {
		views := []keyView{}
		for _, k := range keys {
			status := "active"
			if k.RevokedAt != nil {
				status = "revoked"
			}
			views = append(views, keyView{k.ID, k.Name, k.Principal, k.Operator, status, k.CreatedAt, k.RevokedAt, k.LastUsedAt})
		}
		return clio.WriteJSON(opts.IO.Out, views)
	}
	if len(keys) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "No API keys yet. Create one with: postgres-seren-replicator keys create --name NAME")
		return nil
	}
	w := tabwriter.NewWriter(opts.IO.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tPRINCIPAL\tID\tSTATUS\tCREATED\tLAST USED")
	for _, k := range keys {
		status := "active"
		if k.RevokedAt != nil {
			status = "revoked " + stamp(k.RevokedAt)
		}
		principal := k.Principal
		if k.Operator {
			principal += " (operator)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, principal, k.ID, status, stamp(&k.CreatedAt), stamp(k.LastUsedAt))
	}
	return w.Flush()
}

func runRevoke(ctx context.Context, opts *Options) error {
	if err := opts.Output.Check(); err != nil {
		return err
	}
	if dir, ok := exists(opts); !ok {
		return hint.Wrap(fmt.Errorf("revoke key %s: %w (no service data in %s)", opts.Name, apikeys.ErrNotFound, dir), "pass the serve's --data-dir")
	}
	parts := backends.ForKeys
	if opts.CancelJobs {
		parts |= backends.PartStore
	}
	set, err := openParts(ctx, opts, parts)
	if err != nil {
		return err
	}
	defer set.Close()
	rev, err := set.KeyManager.Revoke(ctx, opts.Name)
	if err != nil {
		if errors.Is(err, apikeys.ErrNotFound) {
			return hint.Wrap(fmt.Errorf("revoke key %s: %w", opts.Name, err), "see the active keys with: keys list")
		}
		return fmt.Errorf("revoke key %s: %w", opts.Name, err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Revoked API key %q; requests with it are refused from now on.\n", opts.Name)
	cancelled := 0
	if opts.CancelJobs {
		if !rev.LastOfPrincipal {
			fmt.Fprintf(opts.IO.ErrOut, "Principal %q still has an active key; its jobs keep running (jobs belong to the principal). Revoke its other keys with --cancel-jobs to stop them.\n",
				rev.Key.Principal)
		} else {
			n, err := cancelPrincipalJobs(ctx, set.Store, rev.Key.Principal)
			if err != nil {
				return hint.Wrap(fmt.Errorf("cancel the jobs of principal %s (%d cancelled): %w", rev.Key.Principal, n, err),
					"the key is revoked; cancel the remaining jobs with an operator key: jobs cancel ID")
			}
			cancelled = n
			fmt.Fprintf(opts.IO.ErrOut, "Cancelled %d active job(s) of principal %q; their workers stop.\n", n, rev.Key.Principal)
		}
	}
	if opts.Output.JSON() {
		return clio.WriteJSON(opts.IO.Out, struct {
			Name          string `json:"name"`
			Revoked       bool   `json:"revoked"`
			CancelledJobs int    `json:"cancelled_jobs"`
		}{opts.Name, true, cancelled})
	}
	return nil
}

// cancelPrincipalJobs cancels every provisioning or running job of
// principal. The workers notice at their next store write (refused: the
// job has ended) and stop; serve's reaper stops any that do not.
func cancelPrincipalJobs(ctx context.Context, store *jobstore.Store, principal string) (int, error) {
	active, err := store.Active(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, j := range active {
		if j.Owner != principal {
			continue
		}
		if _, err := store.Apply(ctx, j.ID, jobs.Cancelled()); err != nil {
			if errors.Is(err, jobs.ErrConflict) {
				continue // it ended meanwhile
			}
			errs = append(errs, fmt.Errorf("cancel job %s: %w", j.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
