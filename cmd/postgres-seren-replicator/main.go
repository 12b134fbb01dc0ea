// Command postgres-seren-replicator replicates PostgreSQL to PostgreSQL with
// zero downtime and runs replication jobs on a job service.
package main

import (
	"os"

	"github.com/serenorg/postgres-seren-replicator/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
