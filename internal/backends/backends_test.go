package backends

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/localkey"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

func TestEmbeddedServeSet(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	s, err := Open(ctx, Config{Backend: Embedded, DataDir: dir}, ForServe)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Store == nil || s.Queue == nil || s.Keeper == nil || s.Keys == nil || s.Logs == nil || s.Metrics == nil || s.Launcher == nil || s.WorkerLogs == nil {
		t.Fatalf("serve set incomplete: %+v", s)
	}
	if s.KeyManager != nil {
		t.Fatal("serve got the key manager it does not need")
	}
	for _, f := range []string{sqlitedb.FileName, localkey.FileName} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %04o, want 0600", f, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	// Sealed with this master key, opened by a worker's set on the same directory.
	sealed, err := s.Keeper.SealCredentials(ctx, "job-1", jobs.Credentials{SourceURL: "postgres://a", TargetURL: "postgres://b"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := Open(ctx, Config{Backend: Embedded, DataDir: dir}, ForWorker)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Queue != nil || w.Launcher != nil || w.Keys != nil {
		t.Fatal("a worker got more than it needs")
	}
	c, err := w.Keeper.OpenCredentials(ctx, "job-1", sealed)
	if err != nil || c.TargetURL != "postgres://b" {
		t.Fatalf("worker could not open the credentials: %v", err)
	}
}

func TestKeysSetMakesNoMasterKey(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), Config{DataDir: dir}, ForKeys)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.KeyManager == nil {
		t.Fatal("no key manager")
	}
	if _, err := os.Stat(filepath.Join(dir, localkey.FileName)); !os.IsNotExist(err) {
		t.Fatalf("master key created for keys: %v", err)
	}
}

func TestUnknownAndUnwiredBackends(t *testing.T) {
	_, err := Open(context.Background(), Config{Backend: "gcp"}, ForServe)
	if err == nil || !strings.Contains(hint.Of(err), "embedded or aws") {
		t.Fatalf("unknown backend: %v (hint %q)", err, hint.Of(err))
	}
	if _, err := Open(context.Background(), Config{Backend: Embedded}, ForServe); err == nil || !strings.Contains(hint.Of(err), "--data-dir") {
		t.Fatalf("no data dir: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(EnvBackend, "")
	t.Setenv(EnvDataDir, "")
	t.Setenv("XDG_DATA_HOME", "/xdg")
	c := FromEnv(Config{})
	if c.Backend != Embedded || c.DataDir != "/xdg/postgres-seren-replicator" {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv(EnvBackend, " AWS ")
	t.Setenv(EnvDataDir, "/srv/seren")
	if c := FromEnv(Config{}); c.Backend != AWS || c.DataDir != "/srv/seren" {
		t.Fatalf("from env: %+v", c)
	}
	if c := FromEnv(Config{Backend: Embedded, DataDir: "/flag"}); c.Backend != Embedded || c.DataDir != "/flag" {
		t.Fatalf("flags win: %+v", c)
	}
}

// A restarted serve lists a worker its predecessor launched: the pid
// recorded on an active job, while that process still runs the job.
func TestLauncherAdoptsRecordedWorkers(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: t.TempDir()}, ForServe)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	j, err := s.Store.Create(ctx, &jobs.Job{Owner: "o", Spec: jobs.Spec{Command: jobs.CommandInit}})
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in for a surviving worker: its command line names `worker`
	// and the job id, as the launcher's workers' do.
	proc := exec.Command("sh", "-c", "sleep 30; exit 0", "worker", j.ID)
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	pid := strconv.Itoa(proc.Process.Pid)
	if _, err := s.Store.Apply(ctx, j.ID, jobs.Provisioned(pid, "local", "")); err != nil {
		t.Fatal(err)
	}
	ws, err := s.Launcher.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].ID != pid || ws[0].JobID != j.ID {
		t.Fatalf("listed %+v, want the recorded worker %s", ws, pid)
	}
	// Once the job has ended it is no longer adopted.
	if _, err := s.Store.Apply(ctx, j.ID, jobs.Failed("x")); err != nil {
		t.Fatal(err)
	}
	if ws, _ := s.Launcher.List(ctx); len(ws) != 0 {
		t.Fatalf("listed %+v for an ended job", ws)
	}
}
