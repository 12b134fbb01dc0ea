// Command lambda-api is the api Lambda function: the job API behind API Gateway's HTTP API (Terraform's coordinator function).
// Built as the provided.al2023 runtime's bootstrap by deploy/aws/deploy.sh:
//
//	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./cmd/lambda-api
//
// Its configuration is the environment deploy/aws/terraform sets (SEREN_*).
package main

import "github.com/serenorg/postgres-seren-replicator/internal/awslambda"

func main() {
	awslambda.Main("lambda-api", awslambda.NewAPI, func(f *awslambda.API) any { return f.Handle })
}
