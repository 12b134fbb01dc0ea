package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher/locallauncher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry/promtelemetry"
	"github.com/serenorg/postgres-seren-replicator/internal/worker"
)

// workerModeEnv turns the re-executed test binary into a worker process:
// the real worker (internal/worker) on the real embedded backends, with a
// stand-in engine, so these tests exercise real processes, signals and
// store writes while the engine's work is controlled.
const workerModeEnv = "SERVICE_TEST_WORKER_MODE"

func TestMain(m *testing.M) {
	// Jobs here name 127.0.0.1:1 (never dialled: the engines are stubs);
	// the worker refuses loopback unless the operator allows it.
	os.Setenv("SEREN_ALLOW_NETWORKS", "127.0.0.0/8")
	if mode := os.Getenv(workerModeEnv); mode != "" {
		os.Exit(workerProcess(mode))
	}
	os.Exit(m.Run())
}

func argValue(name string) string {
	for i, a := range os.Args {
		if a == name && i+1 < len(os.Args) {
			return os.Args[i+1]
		}
	}
	return ""
}

func workerProcess(mode string) int {
	if mode == "exit" {
		fmt.Fprintln(os.Stderr, "stand-in worker: exiting before starting the job")
		return 3
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if mode == "hang" {
		signal.Ignore(syscall.SIGTERM) // a hung worker: only SIGKILL ends it
	}
	set, err := backends.Open(ctx, backends.Config{Backend: backends.Embedded, DataDir: argValue("--data-dir")}, backends.ForWorker)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer set.Close()
	cfg := worker.Config{Store: set.Store, Keeper: set.Keeper, Logs: set.Logs,
		HeartbeatEvery: 100 * time.Millisecond, ProgressEvery: 50 * time.Millisecond, LogFlushEvery: 50 * time.Millisecond}
	switch mode {
	case "hang":
		cfg.HeartbeatEvery, cfg.ProgressEvery = time.Hour, time.Hour
		cfg.Engine = worker.EngineFunc(func(context.Context, jobs.Command, replicator.Options, replicator.Reporter) error {
			select {}
		})
	case "complete":
		cfg.Engine = worker.EngineFunc(func(context.Context, jobs.Command, replicator.Options, replicator.Reporter) error { return nil })
	default: // run: work until stopped
		cfg.Engine = worker.EngineFunc(func(ctx context.Context, _ jobs.Command, _ replicator.Options, rep replicator.Reporter) error {
			rep.Progress(replicator.Progress{Phase: "copy", CurrentDatabase: "app", DatabasesTotal: 1})
			<-ctx.Done()
			return ctx.Err()
		})
	}
	res, err := worker.Run(ctx, cfg, argValue("--job-id"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 130
	}
	fmt.Fprintln(os.Stderr, "outcome:", res.Status)
	return 0
}

// clock is real time plus an offset that tests advance, shared by the
// store, the queue and the service: heartbeats, timeouts and expiry jump
// ahead, while queue delays still pass in real time.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

type bundle struct {
	set      *backends.Set
	launcher *locallauncher.Launcher
	svc      *service.Service
	clock    *clock
	metrics  *promtelemetry.Metrics
	swept    []time.Time
}

type tweaks struct {
	mode   string
	binary string
	cfg    func(*service.Config)
	// wrap decorates the real local launcher the service uses.
	wrap func(launcher.Launcher) launcher.Launcher
}

func setup(t *testing.T, tw tweaks) *bundle {
	t.Helper()
	dir := t.TempDir()
	ck := &clock{}
	set, err := backends.Open(context.Background(), backends.Config{Backend: backends.Embedded, DataDir: dir, Now: ck.Now},
		backends.PartStore|backends.PartQueue|backends.PartKeeper|backends.PartLogs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	bin := tw.binary
	if bin == "" {
		bin = os.Args[0]
	}
	l, err := locallauncher.New(locallauncher.Options{
		Binary: bin, DataDir: dir, Grace: 300 * time.Millisecond,
		Env: append(os.Environ(), workerModeEnv+"="+tw.mode),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ws, _ := l.List(context.Background())
		for _, w := range ws {
			_ = l.Stop(context.Background(), w.ID)
		}
	})
	b := &bundle{set: set, launcher: l, clock: ck, metrics: promtelemetry.New()}
	var used launcher.Launcher = l
	if tw.wrap != nil {
		used = tw.wrap(l)
	}
	cfg := service.Config{
		Store: set.Store, Queue: set.Queue, Launcher: used, Metrics: b.metrics, Logs: set.Logs, Now: ck.Now,
		ReceiveWait: 2 * time.Second, CapacityRetryDelay: 100 * time.Millisecond, LaunchRetryDelay: 10 * time.Millisecond,
		TimeoutGrace: time.Second,
		AfterSweep: func(_ context.Context, before time.Time) error {
			b.swept = append(b.swept, before)
			return nil
		},
	}
	if tw.cfg != nil {
		tw.cfg(&cfg)
	}
	if b.svc, err = service.New(cfg); err != nil {
		t.Fatal(err)
	}
	return b
}

// submit stores and enqueues a job as the API does.
func (b *bundle) submit(t *testing.T, opts jobs.Options) *jobs.Job {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	sealed, err := b.set.Keeper.SealCredentials(ctx, id, jobs.Credentials{SourceURL: "postgres://u:pw@127.0.0.1:1/a", TargetURL: "postgres://u:pw@127.0.0.1:1/b"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := b.set.Store.Create(ctx, &jobs.Job{ID: id, Owner: "key_test", Credentials: sealed,
		Spec: jobs.Spec{Command: jobs.CommandInit, Options: opts}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.set.Queue.Send(ctx, id); err != nil {
		t.Fatal(err)
	}
	return j
}

func (b *bundle) job(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := b.set.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (b *bundle) provision(t *testing.T) int {
	t.Helper()
	n, err := b.svc.ProvisionOnce(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *bundle) check(t *testing.T) {
	t.Helper()
	if err := b.svc.CheckOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) live(t *testing.T) []launcher.Worker {
	t.Helper()
	ws, err := b.launcher.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func (b *bundle) waitStatus(t *testing.T, id string, want jobs.Status) *jobs.Job {
	t.Helper()
	var j *jobs.Job
	waitFor(t, "job "+string(want), func() bool {
		j = b.job(t, id)
		return j.Status == want
	})
	return j
}

func (b *bundle) waitNoWorkers(t *testing.T) {
	t.Helper()
	waitFor(t, "no live workers", func() bool { return len(b.live(t)) == 0 })
}

// queued counts the visible messages (and leaves them visible).
func (b *bundle) queued(t *testing.T) int {
	t.Helper()
	ds, err := b.set.Queue.Receive(context.Background(), queue.MaxBatch, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if err := b.set.Queue.Retry(context.Background(), d, 0); err != nil {
			t.Fatal(err)
		}
	}
	return len(ds)
}

func (b *bundle) logText(t *testing.T, id string) string {
	t.Helper()
	ls, err := b.set.Logs.Read(context.Background(), id, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, l := range ls {
		sb.WriteString(l.Text + "\n")
	}
	return sb.String()
}

func (b *bundle) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := b.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				if c := m.GetCounter(); c != nil {
					sum += c.GetValue()
				}
				if h := m.GetHistogram(); h != nil {
					sum += float64(h.GetSampleCount())
				}
			}
		}
	}
	return sum
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		ok := false
		for _, lp := range m.GetLabel() {
			ok = ok || (lp.GetName() == k && lp.GetValue() == v)
		}
		if !ok {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProvisionLaunchesRecordsAndCancels(t *testing.T) {
	b := setup(t, tweaks{mode: "run"})
	j := b.submit(t, jobs.Options{EstimatedSizeBytes: 5e9})
	if n := b.provision(t); n != 1 {
		t.Fatalf("received %d messages", n)
	}
	got := b.job(t, j.ID)
	if got.WorkerID == "" || got.Attempts != 1 || got.InstanceType != "local" || got.LogURL == "" {
		t.Fatalf("launch not recorded: %+v", got)
	}
	if ws := b.live(t); len(ws) != 1 || ws[0].ID != got.WorkerID || ws[0].JobID != j.ID {
		t.Fatalf("live workers %+v", ws)
	}
	if n := b.queued(t); n != 0 {
		t.Fatalf("%d messages left after a launch", n)
	}
	if c := b.counter(t, "seren_job_provisioned_total", map[string]string{"instance_type": "local", "instance_size": "small"}); c != 1 {
		t.Fatalf("JobProvisioned = %v", c)
	}
	run := b.waitStatus(t, j.ID, jobs.StatusRunning)
	if run.StartedAt == nil || run.WorkerID != got.WorkerID {
		t.Fatalf("running job %+v", run)
	}

	if err := b.svc.Cancel(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	if st := b.job(t, j.ID).Status; st != jobs.StatusCancelled {
		t.Fatalf("after Cancel: %s", st)
	}
	b.waitNoWorkers(t)
	if err := b.svc.Cancel(context.Background(), j.ID); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("second cancel: %v, want ErrConflict", err)
	}
	if !strings.Contains(b.logText(t, j.ID), "cancelled by user") {
		t.Fatal("cancel not noted in the job log")
	}
}

func TestCapacityKeepsJobsQueuedNotFailed(t *testing.T) {
	b := setup(t, tweaks{mode: "run", cfg: func(c *service.Config) { c.MaxConcurrentJobs = 1 }})
	a, c := b.submit(t, jobs.Options{}), b.submit(t, jobs.Options{})
	b.provision(t) // may receive both: one is launched, the other goes back
	launched, waiting := a, c
	if b.job(t, a.ID).WorkerID == "" {
		launched, waiting = c, a
	}
	if b.job(t, launched.ID).WorkerID == "" {
		t.Fatal("no job launched")
	}
	if w := b.job(t, waiting.ID); w.Status != jobs.StatusProvisioning || w.WorkerID != "" {
		t.Fatalf("second job %s worker %q: it must wait in the queue", w.Status, w.WorkerID)
	}
	if free, err := b.svc.FreeSlots(context.Background()); err != nil || free != 0 {
		t.Fatalf("free slots %d, %v", free, err)
	}
	// Even delivered many times while the slot is taken, it is not dead-lettered.
	for i := 0; i < queue.MaxReceiveCount+1; i++ {
		waitFor(t, "message back", func() bool { return b.provision(t) == 1 })
	}
	if w := b.job(t, waiting.ID); w.Status != jobs.StatusProvisioning || w.WorkerID != "" {
		t.Fatalf("waiting job became %s", w.Status)
	}
	if n := len(b.live(t)); n != 1 {
		t.Fatalf("%d workers live with a limit of 1", n)
	}

	if err := b.svc.Cancel(context.Background(), launched.ID); err != nil {
		t.Fatal(err)
	}
	b.waitNoWorkers(t)
	waitFor(t, "second job launched", func() bool {
		b.provision(t)
		return b.job(t, waiting.ID).WorkerID != ""
	})
	b.waitStatus(t, waiting.ID, jobs.StatusRunning)
}

func TestCancelledWhileQueuedIsNotLaunched(t *testing.T) {
	b := setup(t, tweaks{mode: "run"})
	j := b.submit(t, jobs.Options{})
	if err := b.svc.Cancel(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	b.provision(t)
	if ws := b.live(t); len(ws) != 0 {
		t.Fatalf("launched %+v for a cancelled job", ws)
	}
	if n := b.queued(t); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}

func TestDeadLetterAfterLaunchFailures(t *testing.T) {
	b := setup(t, tweaks{binary: "/nonexistent/postgres-seren-replicator"})
	j := b.submit(t, jobs.Options{})
	for i := 0; i < 50 && !b.job(t, j.ID).Status.Terminal(); i++ {
		b.provision(t)
	}
	got := b.job(t, j.ID)
	if got.Status != jobs.StatusFailed {
		t.Fatalf("job %s after repeated launch failures", got.Status)
	}
	want := fmt.Sprintf("could not start a worker after %d attempts", queue.MaxReceiveCount)
	if !strings.Contains(got.Error, want) || !strings.Contains(got.Error, "nonexistent") {
		t.Fatalf("error %q, want %q and the cause", got.Error, want)
	}
	if n := b.queued(t); n != 0 {
		t.Fatalf("%d messages left after dead-lettering", n)
	}
	if c := b.counter(t, "seren_provisioning_failed_total", nil); c != queue.MaxReceiveCount {
		t.Fatalf("ProvisioningFailed = %v, want %d", c, queue.MaxReceiveCount)
	}
	if log := b.logText(t, j.ID); !strings.Contains(log, "attempt 1 of 5") || !strings.Contains(log, "the job failed") {
		t.Fatalf("job log:\n%s", log)
	}
}

func TestRescuerRequeuesThenFailsAHungWorker(t *testing.T) {
	b := setup(t, tweaks{mode: "hang", cfg: func(c *service.Config) { c.MaxAttempts = 2 }})
	j := b.submit(t, jobs.Options{})
	b.provision(t)
	b.waitStatus(t, j.ID, jobs.StatusRunning)
	first := b.job(t, j.ID).WorkerID

	b.clock.Advance(service.DefaultHeartbeatTimeout + time.Second)
	b.check(t)
	got := b.job(t, j.ID)
	if got.Status != jobs.StatusProvisioning || got.WorkerID != "" {
		t.Fatalf("lost worker's job: %s on %q, want re-queued", got.Status, got.WorkerID)
	}
	if last := got.History[len(got.History)-1]; !strings.Contains(last.Reason, "stopped heartbeating") {
		t.Fatalf("history reason %q", last.Reason)
	}
	b.waitNoWorkers(t) // the hung worker was killed
	if n := b.queued(t); n != 1 {
		t.Fatalf("%d messages after re-queue, want 1", n)
	}

	b.provision(t)
	b.waitStatus(t, j.ID, jobs.StatusRunning)
	if w := b.job(t, j.ID); w.Attempts != 2 || w.WorkerID == first {
		t.Fatalf("second worker: attempts %d worker %q", w.Attempts, w.WorkerID)
	}
	b.clock.Advance(service.DefaultHeartbeatTimeout + time.Second)
	b.check(t)
	got = b.job(t, j.ID)
	if got.Status != jobs.StatusFailed || !strings.Contains(got.Error, "gave up after 2 attempts") {
		t.Fatalf("job %s: %q", got.Status, got.Error)
	}
	b.waitNoWorkers(t)
	if log := b.logText(t, j.ID); !strings.Contains(log, "resumes the job from its checkpoint (attempt 2 of 2)") {
		t.Fatalf("job log:\n%s", log)
	}
}

func TestRescuerRequeuesAJobWhoseWorkerDied(t *testing.T) {
	b := setup(t, tweaks{mode: "run"})
	j := b.submit(t, jobs.Options{})
	b.provision(t)
	w := b.waitStatus(t, j.ID, jobs.StatusRunning)
	pid, _ := strconv.Atoi(w.WorkerID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.waitNoWorkers(t)
	b.check(t) // within the grace: not yet
	if st := b.job(t, j.ID).Status; st != jobs.StatusRunning {
		t.Fatalf("re-queued within the grace: %s", st)
	}
	b.clock.Advance(service.DefaultGoneGrace + time.Second)
	b.check(t)
	got := b.job(t, j.ID)
	if got.Status != jobs.StatusProvisioning || !strings.Contains(got.History[len(got.History)-1].Reason, "is gone") {
		t.Fatalf("job %s %+v", got.Status, got.History)
	}
	b.provision(t)
	again := b.waitStatus(t, j.ID, jobs.StatusRunning)
	if again.Attempts != 2 || again.StartedAt == nil || !again.StartedAt.Equal(*w.StartedAt) {
		t.Fatalf("resumed job: attempts %d started %v (first start %v)", again.Attempts, again.StartedAt, w.StartedAt)
	}
}

func TestWorkerThatDiesBeforeStartingIsRetriedThenFailed(t *testing.T) {
	b := setup(t, tweaks{mode: "exit", cfg: func(c *service.Config) { c.MaxAttempts = 2 }})
	j := b.submit(t, jobs.Options{})
	b.provision(t)
	b.waitNoWorkers(t)
	b.clock.Advance(service.DefaultGoneGrace + time.Second)
	b.check(t)
	b.check(t) // a second check must not send it twice
	if st := b.job(t, j.ID).Status; st != jobs.StatusProvisioning {
		t.Fatalf("job %s", st)
	}
	if n := b.queued(t); n != 1 {
		t.Fatalf("%d messages, want exactly 1", n)
	}
	b.provision(t)
	if a := b.job(t, j.ID).Attempts; a != 2 {
		t.Fatalf("attempts %d", a)
	}
	b.waitNoWorkers(t)
	b.clock.Advance(service.DefaultGoneGrace + time.Second)
	b.check(t)
	got := b.job(t, j.ID)
	if got.Status != jobs.StatusFailed || !strings.Contains(got.Error, "exited before starting the job, 2 times") {
		t.Fatalf("job %s: %q", got.Status, got.Error)
	}
}

func TestTimeoutEndsRunningAndQueuedJobs(t *testing.T) {
	b := setup(t, tweaks{mode: "run", cfg: func(c *service.Config) { c.DefaultJobTimeout = time.Hour }})
	running := b.submit(t, jobs.Options{JobTimeout: 60})
	b.provision(t)
	b.waitStatus(t, running.ID, jobs.StatusRunning)
	queued := b.submit(t, jobs.Options{JobTimeout: 120})
	other := b.submit(t, jobs.Options{}) // default timeout: 1h

	b.clock.Advance(62 * time.Second)
	b.check(t)
	got := b.job(t, running.ID)
	if got.Status != jobs.StatusTimeout || got.Error != "job exceeded its timeout of 1m0s" {
		t.Fatalf("running job %s %q", got.Status, got.Error)
	}
	b.waitNoWorkers(t)
	if st := b.job(t, queued.ID).Status; st != jobs.StatusProvisioning {
		t.Fatalf("queued job ended early: %s", st)
	}
	b.clock.Advance(time.Minute)
	b.check(t)
	if st := b.job(t, queued.ID).Status; st != jobs.StatusTimeout {
		t.Fatalf("queued job past its timeout: %s", st)
	}
	if st := b.job(t, other.ID).Status; st != jobs.StatusProvisioning {
		t.Fatalf("job with the default timeout: %s", st)
	}
}

func TestReaperStopsWorkersOfEndedJobs(t *testing.T) {
	b := setup(t, tweaks{mode: "hang"})
	j := b.submit(t, jobs.Options{})
	b.provision(t)
	b.waitStatus(t, j.ID, jobs.StatusRunning)
	if _, err := b.set.Store.Apply(context.Background(), j.ID, jobs.Failed("ended elsewhere")); err != nil {
		t.Fatal(err)
	}
	b.check(t)
	if len(b.live(t)) != 1 {
		t.Fatal("worker reaped before the grace")
	}
	b.clock.Advance(service.DefaultReapGrace + time.Second)
	b.check(t)
	b.waitNoWorkers(t)
}

func TestShutdownStopsWorkersAndRequeues(t *testing.T) {
	b := setup(t, tweaks{mode: "run"})
	j := b.submit(t, jobs.Options{})
	b.provision(t)
	b.waitStatus(t, j.ID, jobs.StatusRunning)
	if err := b.svc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(b.live(t)); n != 0 {
		t.Fatalf("%d workers after shutdown", n)
	}
	got := b.job(t, j.ID)
	if got.Status != jobs.StatusProvisioning || got.History[len(got.History)-1].Reason != "the service stopped" {
		t.Fatalf("job %s %+v", got.Status, got.History)
	}
	if n := b.queued(t); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestFinishedJobsAreCounted(t *testing.T) {
	b := setup(t, tweaks{mode: "complete"})
	j := b.submit(t, jobs.Options{})
	b.check(t) // sees it active
	b.provision(t)
	b.waitStatus(t, j.ID, jobs.StatusCompleted)
	b.check(t)
	if c := b.counter(t, "seren_job_finished_total", map[string]string{"command": "init", "status": "completed"}); c != 1 {
		t.Fatalf("JobFinished = %v", c)
	}
	b.check(t)
	if c := b.counter(t, "seren_job_finished_total", nil); c != 1 {
		t.Fatalf("JobFinished counted twice: %v", c)
	}
}

func TestSweepPurgesExpiredJobs(t *testing.T) {
	b := setup(t, tweaks{mode: "run"})
	old := b.submit(t, jobs.Options{})
	b.clock.Advance(jobs.Retention + time.Hour)
	fresh := b.submit(t, jobs.Options{})
	n, err := b.svc.Sweep(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if _, err := b.set.Store.Get(context.Background(), old.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("expired job: %v", err)
	}
	b.job(t, fresh.ID)
	if len(b.swept) != 1 || b.clock.Now().Add(-jobs.Retention).Sub(b.swept[0]) > time.Minute {
		t.Fatalf("AfterSweep calls %v", b.swept)
	}
	// A message of a purged job is acknowledged, not launched.
	b.provision(t)
	b.provision(t)
	if n := len(b.live(t)); n != 1 {
		t.Fatalf("%d workers, want 1 (the fresh job's)", n)
	}
}

// stopFails is the real local launcher whose Stop fails (an EC2 API
// outage, a permission the operator forgot): the worker keeps running.
type stopFails struct{ launcher.Launcher }

func (stopFails) Stop(context.Context, string) error {
	return errors.New("test: stopping workers is failing")
}

// Attack: the rescuer gives up on a hung worker but cannot stop it. Before
// the fence it re-queued the job anyway and a second worker started on the
// same target while the first still ran.
func TestRescuerNeverRequeuesAWorkerItCouldNotStop(t *testing.T) {
	b := setup(t, tweaks{mode: "hang", cfg: func(c *service.Config) { c.MaxAttempts = 3; c.MaxConcurrentJobs = 4 },
		wrap: func(l launcher.Launcher) launcher.Launcher { return stopFails{l} }})
	j := b.submit(t, jobs.Options{})
	b.provision(t)
	first := b.waitStatus(t, j.ID, jobs.StatusRunning)

	b.clock.Advance(service.DefaultHeartbeatTimeout + time.Second)
	err := b.svc.CheckOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not re-queued") {
		t.Errorf("CheckOnce = %v; want the failed stop reported", err)
	}
	got := b.job(t, j.ID)
	if got.Status != jobs.StatusRunning || got.WorkerID != first.WorkerID || got.Attempts != 1 {
		t.Errorf("job %s on %q attempt %d after a failed stop; want it left running on %s", got.Status, got.WorkerID, got.Attempts, first.WorkerID)
	}
	if n := b.queued(t); n != 0 {
		t.Errorf("%d messages queued after a failed stop; want none", n)
	}
	b.provision(t)
	if ws := b.live(t); len(ws) != 1 || ws[0].ID != first.WorkerID {
		t.Fatalf("live workers %+v; want only the first worker %s", ws, first.WorkerID)
	}
}

// Shutdown re-queues only the jobs whose worker it stopped.
func TestShutdownKeepsJobsWhoseWorkerItCouldNotStop(t *testing.T) {
	b := setup(t, tweaks{mode: "run", wrap: func(l launcher.Launcher) launcher.Launcher { return stopFails{l} }})
	j := b.submit(t, jobs.Options{})
	b.provision(t)
	first := b.waitStatus(t, j.ID, jobs.StatusRunning)
	if err := b.svc.Shutdown(context.Background()); err == nil || !strings.Contains(err.Error(), "not re-queued") {
		t.Errorf("Shutdown = %v; want the failed stop reported", err)
	}
	if got := b.job(t, j.ID); got.Status != jobs.StatusRunning || got.WorkerID != first.WorkerID {
		t.Errorf("job %s on %q; want it left to its still-running worker %s", got.Status, got.WorkerID, first.WorkerID)
	}
	if n := b.queued(t); n != 0 {
		t.Errorf("%d messages after a failed stop, want 0", n)
	}
}
