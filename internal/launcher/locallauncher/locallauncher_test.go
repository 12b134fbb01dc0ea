package locallauncher

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
)

// childEnv switches the test binary into a stand-in worker process: the
// launcher starts real processes, and these tests check what happens to
// them (signals, groups, environment), not what a worker does.
const childEnv = "LOCALLAUNCHER_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(fakeWorker(mode))
	}
	os.Exit(m.Run())
}

func fakeWorker(mode string) int {
	fmt.Printf("args=%q\n", os.Args[1:])
	switch mode {
	case "exit":
		return 0
	case "env":
		for _, kv := range os.Environ() {
			fmt.Println("env:" + kv)
		}
		return 0
	case "term":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		<-c
		fmt.Println("got SIGTERM")
		return 143
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Hour)
	case "spawn":
		cmd := exec.Command("sleep", "3600")
		if err := cmd.Start(); err != nil {
			fmt.Println("spawn:", err)
			return 1
		}
		fmt.Printf("grandchild=%d\n", cmd.Process.Pid)
		signal.Ignore(syscall.SIGTERM)
		_ = cmd.Wait()
		time.Sleep(time.Hour)
	}
	return 0
}

type bundle struct {
	dir string
	l   *Launcher
}

func setup(t *testing.T, mode string, tweak func(*Options)) *bundle {
	t.Helper()
	dir := t.TempDir()
	opts := Options{
		Binary:  os.Args[0],
		DataDir: dir,
		Env:     append(os.Environ(), childEnv+"="+mode),
		Grace:   300 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&opts)
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ws, _ := l.List(context.Background())
		for _, w := range ws {
			_ = l.Stop(context.Background(), w.ID)
		}
	})
	return &bundle{dir: dir, l: l}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func listed(t *testing.T, l *Launcher, id string) bool {
	t.Helper()
	ws, err := l.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.ID == id {
			return true
		}
	}
	return false
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLaunchListStop(t *testing.T) {
	b := setup(t, "term", nil)
	ctx := context.Background()
	w, err := b.l.Launch(ctx, launcher.Request{JobID: "job-1", TraceID: "trace-1"})
	if err != nil {
		t.Fatal(err)
	}
	if w.JobID != "job-1" || w.InstanceType != InstanceType || !w.Running || w.ID == "" {
		t.Fatalf("worker = %+v", w)
	}
	if !listed(t, b.l, w.ID) {
		t.Fatal("launched worker not listed")
	}
	// The worker got only the job id and the data directory.
	waitFor(t, "worker output", func() bool { return strings.Contains(readLog(t, b.l.LogPath("job-1")), "args=") })
	wantArgs := fmt.Sprintf("args=%q", []string{"worker", "--job-id", "job-1", "--data-dir", b.dir})
	if out := readLog(t, b.l.LogPath("job-1")); !strings.Contains(out, wantArgs) {
		t.Fatalf("worker output %q, want %s", out, wantArgs)
	}
	if st, err := os.Stat(b.l.LogPath("job-1")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("log file mode: %v %v", st.Mode(), err)
	}
	// Own process group.
	pid, _ := strconv.Atoi(w.ID)
	if pg, err := syscall.Getpgid(pid); err != nil || pg != pid {
		t.Fatalf("worker pgid = %d (%v), want its own group %d", pg, err, pid)
	}

	if err := b.l.Stop(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if listed(t, b.l, w.ID) {
		t.Fatal("stopped worker still listed")
	}
	if out := readLog(t, b.l.LogPath("job-1")); !strings.Contains(out, "got SIGTERM") {
		t.Fatalf("worker was not asked to stop with SIGTERM: %q", out)
	}
	if err := b.l.Stop(ctx, w.ID); err != nil {
		t.Fatalf("stopping a gone worker: %v", err)
	}
}

func TestExitedWorkerLeavesList(t *testing.T) {
	b := setup(t, "exit", nil)
	w, err := b.l.Launch(context.Background(), launcher.Request{JobID: "job-2"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "exit", func() bool { return !listed(t, b.l, w.ID) })
}

func TestStopEscalatesToSIGKILLAndKillsTheGroup(t *testing.T) {
	b := setup(t, "spawn", nil)
	ctx := context.Background()
	w, err := b.l.Launch(ctx, launcher.Request{JobID: "job-3"})
	if err != nil {
		t.Fatal(err)
	}
	var gpid int
	waitFor(t, "grandchild", func() bool {
		for _, line := range strings.Split(readLog(t, b.l.LogPath("job-3")), "\n") {
			if v, ok := strings.CutPrefix(line, "grandchild="); ok {
				gpid, _ = strconv.Atoi(v)
			}
		}
		return gpid > 0
	})
	start := time.Now()
	if err := b.l.Stop(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("Stop returned after %s, before the grace period", d)
	}
	if listed(t, b.l, w.ID) {
		t.Fatal("worker still listed")
	}
	waitFor(t, "grandchild gone", func() bool { return !alive(gpid) })
}

func TestCredentialsNotInherited(t *testing.T) {
	b := setup(t, "env", func(o *Options) {
		o.Env = append(o.Env, "PGPASSWORD=sentinel-pw", "SEREN_API_KEY=sk_live_sentinel", "SEREN_BACKEND=embedded")
	})
	w, err := b.l.Launch(context.Background(), launcher.Request{JobID: "job-4"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "exit", func() bool { return !listed(t, b.l, w.ID) })
	out := readLog(t, b.l.LogPath("job-4"))
	if strings.Contains(out, "sentinel") {
		t.Fatalf("worker inherited a credential:\n%s", out)
	}
	if !strings.Contains(out, "env:SEREN_BACKEND=embedded") {
		t.Fatalf("worker lost ordinary configuration:\n%s", out)
	}
}

func TestAdoptAfterRestart(t *testing.T) {
	first := setup(t, "term", nil)
	ctx := context.Background()
	w, err := first.l.Launch(ctx, launcher.Request{JobID: "job-5"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "worker running", func() bool { return strings.Contains(readLog(t, first.l.LogPath("job-5")), "args=") })

	self := strconv.Itoa(os.Getpid())
	known := []launcher.Worker{
		{ID: w.ID, JobID: "job-5"},
		// A pid that is alive but is not a worker of that job (pid reuse).
		{ID: self, JobID: "job-6"},
		// A pid that does not exist.
		{ID: "999999999", JobID: "job-7"},
	}
	second, err := New(Options{Binary: os.Args[0], DataDir: first.dir, Grace: 300 * time.Millisecond,
		Known: func(context.Context) ([]launcher.Worker, error) { return known, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := second.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].ID != w.ID || ws[0].JobID != "job-5" || !ws[0].Running {
		t.Fatalf("adopted workers = %+v, want only %s", ws, w.ID)
	}
	// Stopping a pid that is not a worker of its job leaves it alone.
	if err := second.Stop(ctx, self); err != nil {
		t.Fatal(err)
	}
	if err := second.Stop(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "adopted worker stopped", func() bool { return !listed(t, first.l, w.ID) })
	if out := readLog(t, first.l.LogPath("job-5")); !strings.Contains(out, "got SIGTERM") {
		t.Fatalf("adopted worker not stopped with SIGTERM: %q", out)
	}
	if ws, _ := second.List(ctx); len(ws) != 0 {
		t.Fatalf("after stop: %+v", ws)
	}
}

func TestLaunchErrors(t *testing.T) {
	dir := t.TempDir()
	l, err := New(Options{Binary: filepath.Join(dir, "no-such-binary"), DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Launch(context.Background(), launcher.Request{JobID: "job-8"}); err == nil {
		t.Fatal("launch of a missing binary succeeded")
	}
	for _, id := range []string{"", "../etc/passwd", "a b"} {
		if _, err := l.Launch(context.Background(), launcher.Request{JobID: id}); err == nil {
			t.Fatalf("launch with job id %q succeeded", id)
		}
	}
	if err := l.Stop(context.Background(), "not-a-pid"); err == nil {
		t.Fatal("stop of a bad id succeeded")
	}
}

func TestPurgeLogs(t *testing.T) {
	b := setup(t, "exit", nil)
	if err := os.MkdirAll(filepath.Join(b.dir, LogDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	old, fresh := b.l.LogPath("old"), b.l.LogPath("fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-31 * 24 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	n, err := b.l.PurgeLogs(time.Now().Add(-30 * 24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PurgeLogs = %d, %v", n, err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatal("old log kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("fresh log removed")
	}
}
