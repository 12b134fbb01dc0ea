// Command lambda-reaper is the reaper Lambda function: runs every 5 minutes: terminates orphaned workers, ends overdue jobs, fails jobs whose worker was lost.
// Built as the provided.al2023 runtime's bootstrap by deploy/aws/deploy.sh:
//
//	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./cmd/lambda-reaper
//
// Its configuration is the environment deploy/aws/terraform sets (SEREN_*).
package main

import "github.com/serenorg/postgres-seren-replicator/internal/awslambda"

func main() {
	awslambda.Main("lambda-reaper", awslambda.NewReaper, func(f *awslambda.Reaper) any { return f.Handle })
}
