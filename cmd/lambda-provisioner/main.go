// Command lambda-provisioner is the provisioner Lambda function: consumes the provisioning queue and launches one EC2 worker per job.
// Built as the provided.al2023 runtime's bootstrap by deploy/aws/deploy.sh:
//
//	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./cmd/lambda-provisioner
//
// Its configuration is the environment deploy/aws/terraform sets (SEREN_*).
package main

import "github.com/serenorg/postgres-seren-replicator/internal/awslambda"

func main() {
	awslambda.Main("lambda-provisioner", awslambda.NewProvisioner, func(f *awslambda.Provisioner) any { return f.Handle })
}
