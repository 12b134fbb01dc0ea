package workercmd

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// newJob stores a job as the API and provisioner would.
func newJob(t *testing.T, dir string, cmd jobs.Command) string {
	t.Helper()
	ctx := context.Background()
	s, err := backends.Open(ctx, backends.Config{Backend: backends.Embedded, DataDir: dir}, backends.PartStore|backends.PartKeeper)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := uuid.NewString()
	sealed, err := s.Keeper.SealCredentials(ctx, id, jobs.Credentials{
		SourceURL: "postgres://u:Sentinel-worker@127.0.0.1:1/postgres", TargetURL: "postgres://u:Sentinel-worker@127.0.0.1:1/postgres"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store.Create(ctx, &jobs.Job{ID: id, Owner: "o", Credentials: sealed, Spec: jobs.Spec{Command: cmd}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store.Apply(ctx, id, jobs.Provisioned(strconv.Itoa(os.Getpid()), "local", "")); err != nil {
		t.Fatal(err)
	}
	return id
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	io, _, _, errOut := iostreams.Test()
	ctx := context.Background()
	t.Setenv(backends.EnvBackend, "")

	if code := exitCode(run(ctx, &Options{IO: io, DataDir: dir})); code != 2 {
		t.Fatalf("no --job-id: exit %d", code)
	}
	if err := run(ctx, &Options{IO: io, DataDir: dir, JobID: "no-such-job"}); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}

	// The source is unreachable: the job fails, the worker exits 1, and
	// neither the job nor the output holds the password.
	failing := newJob(t, dir, jobs.CommandValidate)
	err := run(ctx, &Options{IO: io, DataDir: dir, JobID: failing})
	if code := exitCode(err); code != clio.ExitFailure || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("failed job: exit %d, %v", code, err)
	}
	if strings.Contains(err.Error()+errOut.String(), "Sentinel-worker") {
		t.Fatal("the password reached the worker's output")
	}

	cancelled := newJob(t, dir, jobs.CommandInit)
	s, err := backends.Open(ctx, backends.Config{DataDir: dir}, backends.PartStore)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Store.Apply(ctx, cancelled, jobs.Cancelled()); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(run(ctx, &Options{IO: io, DataDir: dir, JobID: cancelled})); code != clio.ExitCanceled {
		t.Fatalf("cancelled job: exit %d", code)
	}
}
