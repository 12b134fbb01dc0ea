// Command lambda-api is the api Lambda function: the job API behind API Gateway's HTTP API (Terraform's coordinator function).
// Built as the provided.al2023 runtime's bootstrap by deploy/aws/deploy.sh:
//
//	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./cmd/lambda-api
//
// Its configuration is the environment deploy/aws/terraform sets (SEREN_*).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
	"github.com/serenorg/postgres-seren-replicator/internal/buildinfo"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

func main() {
	if err := run(context.Background()); err != nil {
		// A failed start is an init error: Lambda reports it and retries.
		fmt.Fprintln(os.Stderr, "lambda-api:", err)
		if h := hint.Of(err); h != "" {
			fmt.Fprintln(os.Stderr, "hint:", h)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := awslambda.FromEnv()
	if err != nil {
		return err
	}
	cfg.Version = buildinfo.Get().Version
	fn, err := awslambda.NewAPI(ctx, cfg)
	if err != nil {
		return err
	}
	defer fn.Close()
	lambda.StartWithOptions(fn.Handle, lambda.WithContext(ctx))
	return nil
}
