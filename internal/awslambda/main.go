package awslambda

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/serenorg/postgres-seren-replicator/internal/buildinfo"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// Function is what each Lambda function of this package is.
type Function interface{ Close() error }

// Main is the whole main of a Lambda entry point: it reads the
// configuration Terraform sets (SEREN_*), builds the function, serves the
// handler that handler picks, and on a failed start prints the error (and
// its hint) and exits 1, which Lambda reports as an init error and retries.
func Main[F Function](name string, build func(context.Context, Config) (F, error), handler func(F) any) {
	ctx := context.Background()
	cfg, err := FromEnv()
	var fn F
	if err == nil {
		cfg.Version = buildinfo.Get().Version
		fn, err = build(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		if h := hint.Of(err); h != "" {
			fmt.Fprintln(os.Stderr, "hint:", h)
		}
		os.Exit(1)
	}
	defer fn.Close()
	lambda.StartWithOptions(handler(fn), lambda.WithContext(ctx))
}
