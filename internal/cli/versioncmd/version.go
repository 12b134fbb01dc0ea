// Package versioncmd implements `version`.
package versioncmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/buildinfo"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
)

// New returns the version command.
func New(io *iostreams.IOStreams) *cobra.Command {
	var out clio.Output
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print version and build information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.Check(); err != nil {
				return err
			}
			info := buildinfo.Get()
			if out.JSON() {
				return clio.WriteJSON(io.Out, info)
			}
			_, err := fmt.Fprintln(io.Out, info.String())
			return err
		},
	}
	out.Add(cmd)
	return cmd
}
