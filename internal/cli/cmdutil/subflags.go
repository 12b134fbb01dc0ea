package cmdutil

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/logical"
)

// PasswordEnv holds the password of --subscription-user (never a flag, so
// it stays out of process arguments and shell history).
const PasswordEnv = "SEREN_SUBSCRIPTION_PASSWORD"

// SubFlags are the flags that shape the subscription's connection to the
// source (shared with init through AddTo/Options).
type SubFlags struct {
	PasswordMode string
	Passfile     string
	User         string
	Host         string
}

// AddTo registers the flags on cmd.
func (f *SubFlags) AddTo(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.PasswordMode, "subscription-password", "inline",
		"how the target authenticates to the source: inline (password stored in the target's catalog) or passfile (a pgpass file on the target server host); see docs/sync.md")
	fl.StringVar(&f.Passfile, "subscription-passfile", "", "with --subscription-password passfile: the pgpass file's path on the TARGET server host (default: the server OS user's ~/.pgpass)")
	fl.StringVar(&f.User, "subscription-user", "", "connect the subscription as this dedicated replication role instead of the --source user (password from env "+PasswordEnv+")")
	fl.StringVar(&f.Host, "subscription-host", "", "host[:port] under which the target server reaches the source, if different from --source's")
}

// Options turns the flags into subscription options.
func (f *SubFlags) Options() (logical.SubOptions, error) {
	mode, err := logical.ParsePasswordMode(f.PasswordMode)
	if err != nil {
		return logical.SubOptions{}, clio.Usage(fmt.Errorf("--subscription-password: %w", err))
	}
	if f.Passfile != "" && mode != logical.PasswordPassfile {
		return logical.SubOptions{}, clio.Usage(errors.New("--subscription-passfile needs --subscription-password passfile"))
	}
	o := logical.SubOptions{PasswordMode: mode, Passfile: f.Passfile, User: f.User, Host: f.Host}
	if f.User != "" {
		o.Password = os.Getenv(PasswordEnv)
		if o.Password == "" && mode == logical.PasswordInline {
			return o, clio.Usage(fmt.Errorf("--subscription-user %s: set its password in env %s (or use --subscription-password passfile)", f.User, PasswordEnv))
		}
	}
	return o, nil
}
