package locallauncher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
)

// InstanceType is what Worker.InstanceType says for a local worker.
const InstanceType = "local"

// DefaultGrace is how long Stop waits after SIGTERM before SIGKILL.
const DefaultGrace = 10 * time.Second

// LogDirName is the directory under the data directory holding one output
// file per job.
const LogDirName = "workers"

// Options configure a Launcher.
type Options struct {
	// Binary is the executable started as the worker (default: the
	// running executable).
	Binary string
	// DataDir is passed to the worker as --data-dir (required).
	DataDir string
	// ExtraArgs are appended to the worker's arguments.
	ExtraArgs []string
	// LogDir receives DIR/<job-id>.log (default DataDir/workers).
	LogDir string
	// Env is the workers' environment (default: this process's), with
	// credential-carrying variables removed either way.
	Env []string
	// Grace is the SIGTERM → SIGKILL wait of Stop (default DefaultGrace).
	Grace time.Duration
	// Known lists workers an earlier process launched (the worker ids
	// recorded on active jobs), so they can be listed and stopped after a
	// restart. Nil: only this process's children.
	Known func(ctx context.Context) ([]launcher.Worker, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives worker exits (default: discard).
	Logger *slog.Logger
}

// Launcher starts workers as local subprocesses. It is safe for concurrent
// use.
type Launcher struct {
	opts Options

	mu       sync.Mutex
	children map[int]*child
}

type child struct {
	w    launcher.Worker
	done chan struct{} // closed when the process has been reaped
}

var _ launcher.Launcher = (*Launcher)(nil)

// New returns a launcher.
func New(opts Options) (*Launcher, error) {
	if opts.DataDir == "" {
		return nil, errors.New("locallauncher: no data directory")
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("locallauncher: data directory %s: %w", opts.DataDir, err)
	}
	opts.DataDir = dir
	if opts.Binary == "" {
		if opts.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("locallauncher: find own executable: %w", err)
		}
	}
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(opts.DataDir, LogDirName)
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	opts.Env = cleanEnv(opts.Env)
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Launcher{opts: opts, children: map[int]*child{}}, nil
}

// credentialEnv are variables a worker must not inherit.
var credentialEnv = []string{
	"PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE", "SEREN_API_KEY", "SEREN_SOURCE_URL", "SEREN_TARGET_URL",
	"SEREN_SUBSCRIPTION_PASSWORD", "DATABASE_URL",
}

func cleanEnv(env []string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		for _, bad := range credentialEnv {
			if k == bad {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// LogPath is the file a job's worker output goes to.
func (l *Launcher) LogPath(jobID string) string {
	return filepath.Join(l.opts.LogDir, jobID+".log")
}

// Args returns the worker's arguments for jobID (after the binary).
func (l *Launcher) Args(jobID string) []string {
	args := []string{"worker", "--job-id", jobID, "--data-dir", l.opts.DataDir}
	return append(args, l.opts.ExtraArgs...)
}

// Launch starts a worker for r.JobID.
func (l *Launcher) Launch(ctx context.Context, r launcher.Request) (launcher.Worker, error) {
	if err := validJobID(r.JobID); err != nil {
		return launcher.Worker{}, fmt.Errorf("launch worker: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return launcher.Worker{}, fmt.Errorf("launch worker for job %s: %w", r.JobID, err)
	}
	if err := os.MkdirAll(l.opts.LogDir, 0o700); err != nil {
		return launcher.Worker{}, hint.Wrap(fmt.Errorf("launch worker for job %s: create log directory: %w", r.JobID, err),
			"check that the --data-dir is writable")
	}
	out, err := os.OpenFile(l.LogPath(r.JobID), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return launcher.Worker{}, fmt.Errorf("launch worker for job %s: open log file: %w", r.JobID, err)
	}
	// Not CommandContext: the worker must outlive the launch request.
	cmd := exec.Command(l.opts.Binary, l.Args(r.JobID)...)
	cmd.Env = l.opts.Env
	cmd.Dir = l.opts.DataDir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return launcher.Worker{}, hint.Wrap(fmt.Errorf("launch worker for job %s: %w", r.JobID, err),
			"check --worker-binary (it must be this program's executable)")
	}
	pid := cmd.Process.Pid
	c := &child{
		w: launcher.Worker{ID: strconv.Itoa(pid), JobID: r.JobID, InstanceType: InstanceType,
			LaunchedAt: l.opts.Now(), Running: true},
		done: make(chan struct{}),
	}
	l.mu.Lock()
	l.children[pid] = c
	l.mu.Unlock()
	go func() {
		err := cmd.Wait()
		out.Close()
		l.mu.Lock()
		delete(l.children, pid)
		l.mu.Unlock()
		close(c.done)
		code := 0
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		l.opts.Logger.Info("worker exited", "job_id", r.JobID, "worker_id", c.w.ID, "exit_code", code, "err", errString(err))
	}()
	return c.w, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// List returns the live workers: this process's children, and adopted
// workers (Options.Known) whose process still runs the job.
func (l *Launcher) List(ctx context.Context) ([]launcher.Worker, error) {
	l.mu.Lock()
	out := make([]launcher.Worker, 0, len(l.children))
	seen := map[string]bool{}
	for _, c := range l.children {
		out = append(out, c.w)
		seen[c.w.ID] = true
	}
	l.mu.Unlock()
	if l.opts.Known != nil {
		known, err := l.opts.Known(ctx)
		if err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
		for _, k := range known {
			if seen[k.ID] {
				continue
			}
			pid, err := strconv.Atoi(k.ID)
			if err != nil || pid <= 0 || !runsJob(pid, k.JobID) {
				continue
			}
			seen[k.ID] = true
			k.Running = true
			if k.InstanceType == "" {
				k.InstanceType = InstanceType
			}
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Stop ends a worker: SIGTERM to its process group, SIGKILL after Grace.
func (l *Launcher) Stop(ctx context.Context, workerID string) error {
	pid, err := strconv.Atoi(workerID)
	if err != nil || pid <= 1 {
		return fmt.Errorf("stop worker %q: not a local worker id", workerID)
	}
	l.mu.Lock()
	c := l.children[pid]
	l.mu.Unlock()
	if c != nil {
		return l.stop(ctx, pid, func() bool {
			select {
			case <-c.done:
				return true
			default:
				return false
			}
		}, c.done)
	}
	// Not our child: only an adopted worker, verified against its job.
	jobID, ok, err := l.knownJob(ctx, workerID)
	if err != nil {
		return fmt.Errorf("stop worker %s: %w", workerID, err)
	}
	if !ok || !runsJob(pid, jobID) {
		return nil // gone, or the pid now belongs to something else
	}
	return l.stop(ctx, pid, func() bool { return !alive(pid) }, nil)
}

// stop signals pid's group and waits until gone() (polling, or on done).
func (l *Launcher) stop(ctx context.Context, pid int, gone func() bool, done <-chan struct{}) error {
	if gone() {
		return nil
	}
	target := -pid
	if pg, err := syscall.Getpgid(pid); err != nil || pg != pid {
		target = pid // not a group leader (should not happen): the process alone
	}
	if err := syscall.Kill(target, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop worker %d: %w", pid, err)
	}
	if waitGone(ctx, l.opts.Grace, gone, done) {
		// The leader is gone; make sure no tool it started lingers.
		if target < 0 {
			_ = syscall.Kill(target, syscall.SIGKILL)
		}
		return nil
	}
	if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill worker %d: %w", pid, err)
	}
	if !waitGone(ctx, 5*time.Second, gone, done) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stop worker %d: %w", pid, err)
		}
		return fmt.Errorf("stop worker %d: still running after SIGKILL", pid)
	}
	return nil
}

func waitGone(ctx context.Context, d time.Duration, gone func() bool, done <-chan struct{}) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if gone() {
			return true
		}
		select {
		case <-done:
			return true
		case <-tick.C:
		case <-deadline.C:
			return gone()
		case <-ctx.Done():
			return gone()
		}
	}
}

func (l *Launcher) knownJob(ctx context.Context, workerID string) (string, bool, error) {
	if l.opts.Known == nil {
		return "", false, nil
	}
	known, err := l.opts.Known(ctx)
	if err != nil {
		return "", false, err
	}
	for _, k := range known {
		if k.ID == workerID {
			return k.JobID, true, nil
		}
	}
	return "", false, nil
}

// Wait blocks until every child of this launcher has exited or ctx ends
// (used by tests and graceful shutdown).
func (l *Launcher) Wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		var c *child
		for _, x := range l.children {
			c = x
			break
		}
		l.mu.Unlock()
		if c == nil {
			return nil
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// PurgeLogs removes worker output files last written before before, and
// reports how many it removed.
func (l *Launcher) PurgeLogs(before time.Time) (int, error) {
	entries, err := os.ReadDir(l.opts.LogDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("purge worker logs: %w", err)
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(filepath.Join(l.opts.LogDir, e.Name())); err == nil {
			n++
		}
	}
	return n, nil
}

// alive reports whether pid exists (and is not a zombie).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Field 3 is the state; Z is a zombie (exited, not yet reaped).
		if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return false
		}
	}
	return true
}

// runsJob reports whether pid is alive and is a worker of jobID. Where
// /proc exists its command line must hold "worker" and the job id as
// separate arguments, so a reused pid does not count.
func runsJob(pid int, jobID string) bool {
	if jobID == "" || !alive(pid) {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat("/proc/self"); serr != nil {
			return true // no /proc on this system: alive is all we can tell
		}
		return false
	}
	if err != nil {
		return false
	}
	var isWorker, hasJob bool
	for _, a := range bytes.Split(raw, []byte{0}) {
		switch string(a) {
		case "worker":
			isWorker = true
		case jobID:
			hasJob = true
		}
	}
	return isWorker && hasJob
}

func validJobID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("invalid job id %q", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("invalid job id %q", id)
		}
	}
	return nil
}
