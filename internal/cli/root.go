// Package cli wires the commands together and owns the one error printer:
// every command returns an error, and Main prints it as "Error: …" with the
// fix as "Try: …" and maps it to a documented exit code.
package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/buildinfo"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cutovercmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/initcmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/jobscmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/keyscmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/servecmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/statuscmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/synccmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/validatecmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/verifycmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/versioncmd"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/workercmd"
)

// Main runs the CLI with args (without the program name) and returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, iostreams.System(), args)
}

// Run is Main with injected context and streams (tests).
func Run(ctx context.Context, io *iostreams.IOStreams, args []string) int {
	root := NewRoot(io)
	root.SetArgs(args)
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return clio.ExitOK
	}
	return PrintError(io, err)
}

// PrintError prints err with its hint and returns its exit code.
func PrintError(io *iostreams.IOStreams, err error) int { return clio.PrintError(io, err) }

// NewRoot builds the command tree.
func NewRoot(io *iostreams.IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "postgres-seren-replicator",
		Short: "Zero-downtime PostgreSQL-to-PostgreSQL replication",
		Long: `postgres-seren-replicator copies roles, schema and data of one or many databases
from a source PostgreSQL server to a target at one consistent snapshot, then keeps
the target in sync with logical replication until you cut over.

Typical flow:
  postgres-seren-replicator validate --source $SRC --target $DST
  postgres-seren-replicator init     --source $SRC --target $DST
  postgres-seren-replicator status   --source $SRC --target $DST
  postgres-seren-replicator verify   --source $SRC --target $DST
  postgres-seren-replicator cutover  --source $SRC --target $DST`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// v3 habits: --version/-V prints what `version` prints; --no-interactive is accepted everywhere.
	root.Version = buildinfo.Get().String()
	root.Flags().BoolP("version", "V", false, "print the version and exit")
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().Bool("no-interactive", false, "never prompt for a selection (accepted by every command, as in v3)")
	root.SetFlagErrorFunc(clio.FlagError)
	var quiet bool
	root.PersistentFlags().BoolVarP(&quiet, "quiet", "q", false, "print only the result and errors (no progress, notes or warnings)")
	root.PersistentFlags().BoolVarP(&io.Verbose, "verbose", "v", false, "more detail (a remote job's log lines also on a terminal)")
	root.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		if quiet && io.Verbose {
			return clio.Usagef("-q and -v contradict each other")
		}
		if quiet {
			io.SetQuiet()
		}
		return nil
	}
	cobra.EnableTraverseRunHooks = true // root's hook and a group's (jobs) both run
	// One line per command.
	root.AddCommand(
		versioncmd.New(io),
		verifycmd.New(io),
		validatecmd.New(io),
		synccmd.New(io),
		statuscmd.New(io),
		cutovercmd.New(io),
		initcmd.New(io),
		servecmd.New(io),
		workercmd.New(io),
		keyscmd.New(io),
		jobscmd.New(io),
	)
	clio.StrictArgs(root)
	return root
}
