package initcmd

import (
	"context"
	"errors"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
)

// runRemote submits init to the job service and follows it.
func runRemote(ctx context.Context, opts *Options, eng replicator.Options) error {
	return hint.Wrap(errors.New("remote execution is not available in this build"), "pass --local to run here")
}
