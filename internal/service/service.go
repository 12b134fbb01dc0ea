package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry"
)

// Defaults for Config.
const (
	DefaultMaxConcurrentJobs  = 10
	DefaultVisibility         = 2 * time.Minute
	DefaultReceiveWait        = 2 * time.Second
	DefaultSlotPollInterval   = 250 * time.Millisecond
	DefaultCapacityRetryDelay = 5 * time.Second
	DefaultLaunchRetryDelay   = 2 * time.Second
	MaxLaunchRetryDelay       = time.Minute
	DefaultHeartbeatTimeout   = 60 * time.Second
	DefaultGoneGrace          = 5 * time.Second
	DefaultMaxAttempts        = 3
	DefaultTimeoutGrace       = time.Minute
	DefaultReapGrace          = 30 * time.Second
	DefaultCheckInterval      = 5 * time.Second
	DefaultSweepInterval      = time.Hour
)

// Config wires the service to its pieces.
type Config struct {
	Store    *jobstore.Store   // required
	Queue    queue.Queue       // required
	Launcher launcher.Launcher // required
	Metrics  telemetry.Metrics // optional
	// Logs, when set, receives the service's notes on a job (a lost worker
	// re-queued, a launch that failed) so `jobs logs` shows them.
	Logs   joblog.Log
	Logger *slog.Logger
	Now    func() time.Time

	// MaxConcurrentJobs is how many workers may be alive at once (default 10).
	MaxConcurrentJobs int
	// DefaultJobTimeout, when set, applies to jobs without
	// options.job_timeout; 0 means by size (jobs.DefaultTimeoutFor).
	DefaultJobTimeout time.Duration
	// InstanceType names the workers in metrics when the launcher does not
	// (default "local").
	InstanceType string
	// InstanceTypeFor, when set, names the instance type a job's launch
	// asked for (ProvisioningFailed's dimension) instead of InstanceType.
	InstanceTypeFor func(*jobs.Job) string
	// FailureReason classifies a launch error for the ProvisioningFailed
	// metric (default: "capacity" or "launch_error").
	FailureReason func(error) string

	// Provisioner timing.
	Visibility         time.Duration // lease of a received message
	ReceiveWait        time.Duration // long poll of one Receive
	SlotPollInterval   time.Duration // re-check for a free slot when all are taken
	CapacityRetryDelay time.Duration // delay of a message that found no free slot
	LaunchRetryDelay   time.Duration // first backoff after a failed launch (doubles, max 1 min)

	// Checker timing and limits.
	HeartbeatTimeout time.Duration // a running job's heartbeat older than this: worker lost
	// GoneGrace: a job's recorded worker absent from the launcher's list,
	// and silent, this long is gone. Local workers are listed the moment
	// they start; with a launcher whose list lags (EC2: an instance that is
	// still booting) set it above that lag.
	GoneGrace     time.Duration
	MaxAttempts   int           // workers a job may have before a lost one fails it
	TimeoutGrace  time.Duration // the checker ends an overdue job this long after its timeout
	ReapGrace     time.Duration // a worker may outlive its job's end this long
	CheckInterval time.Duration
	SweepInterval time.Duration
	// AfterSweep, when set, runs after each purge with the cut-off time
	// (e.g. removing local worker output files).
	AfterSweep func(ctx context.Context, before time.Time) error
}

// Service runs the provisioner, checker and sweeper.
type Service struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	prevActive map[string]bool
	resent     map[string]string // job id → dead worker already re-sent for

	bg sync.WaitGroup
}

// New returns a service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("service: no job store")
	case cfg.Queue == nil:
		return nil, errors.New("service: no queue")
	case cfg.Launcher == nil:
		return nil, errors.New("service: no launcher")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.MaxConcurrentJobs <= 0 {
		cfg.MaxConcurrentJobs = DefaultMaxConcurrentJobs
	}
	def(&cfg.Visibility, DefaultVisibility)
	def(&cfg.ReceiveWait, DefaultReceiveWait)
	def(&cfg.SlotPollInterval, DefaultSlotPollInterval)
	def(&cfg.CapacityRetryDelay, DefaultCapacityRetryDelay)
	def(&cfg.LaunchRetryDelay, DefaultLaunchRetryDelay)
	def(&cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&cfg.GoneGrace, DefaultGoneGrace)
	def(&cfg.TimeoutGrace, DefaultTimeoutGrace)
	def(&cfg.ReapGrace, DefaultReapGrace)
	def(&cfg.CheckInterval, DefaultCheckInterval)
	def(&cfg.SweepInterval, DefaultSweepInterval)
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.InstanceType == "" {
		cfg.InstanceType = "local"
	}
	if cfg.FailureReason == nil {
		cfg.FailureReason = func(err error) string {
			if errors.Is(err, launcher.ErrCapacity) {
				return "capacity"
			}
			return "launch_error"
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger, resent: map[string]string{}}, nil
}

// Run runs the provisioner, checker and sweeper until ctx ends. It checks
// and sweeps once at start, so a restarted service rescues jobs at once.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	loops := []func(context.Context){s.provisionLoop, s.checkLoop, s.sweepLoop}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
	s.bg.Wait()
	return nil
}

func (s *Service) provisionLoop(ctx context.Context) {
	for ctx.Err() == nil {
		free, err := s.FreeSlots(ctx)
		if err != nil {
			s.log.Error("count live workers", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if free <= 0 {
			sleep(ctx, s.cfg.SlotPollInterval)
			continue
		}
		if _, err := s.ProvisionOnce(ctx, free); err != nil && ctx.Err() == nil {
			s.log.Error("provision", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

func (s *Service) checkLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		if err := s.CheckOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("check jobs", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if n, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("purge expired jobs", "err", err)
		} else if n > 0 {
			s.log.Info("purged expired jobs", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// FreeSlots is MaxConcurrentJobs minus the live workers.
func (s *Service) FreeSlots(ctx context.Context) (int, error) {
	live, err := s.cfg.Launcher.List(ctx)
	if err != nil {
		return 0, err
	}
	return s.cfg.MaxConcurrentJobs - len(live), nil
}

// ProvisionOnce receives up to max messages (waiting up to ReceiveWait)
// and handles each; it returns how many it received.
func (s *Service) ProvisionOnce(ctx context.Context, max int) (int, error) {
	max = min(max, queue.MaxBatch)
	if max <= 0 {
		return 0, nil
	}
	ds, err := s.cfg.Queue.Receive(ctx, max, s.cfg.Visibility, s.cfg.ReceiveWait)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil
		}
		return 0, fmt.Errorf("receive from queue: %w", err)
	}
	var errs []error
	for _, d := range ds {
		if err := s.HandleDelivery(ctx, d); err != nil {
			errs = append(errs, err)
		}
	}
	return len(ds), errors.Join(errs...)
}

// HandleDelivery provisions the job of one queue message. Every path ends
// the message: acknowledged (launched, nothing to do, or dead-lettered
// with the job failed) or returned to the queue with a delay.
func (s *Service) HandleDelivery(ctx context.Context, d queue.Delivery) error {
	j, err := s.cfg.Store.Get(ctx, d.JobID)
	if errors.Is(err, jobs.ErrNotFound) {
		return s.ack(ctx, d) // purged, or a message of a job that never was
	}
	if err != nil {
		s.retry(ctx, d, s.launchBackoff(d.ReceiveCount))
		return fmt.Errorf("provision job %s: %w", d.JobID, err)
	}
	if j.Status != jobs.StatusProvisioning {
		return s.ack(ctx, d) // running, or ended (e.g. cancelled while queued)
	}
	live, err := s.cfg.Launcher.List(ctx)
	if err != nil {
		s.retry(ctx, d, s.launchBackoff(d.ReceiveCount))
		return fmt.Errorf("provision job %s: list workers: %w", j.ID, err)
	}
	for _, w := range live {
		if w.JobID == j.ID {
			return s.ack(ctx, d) // already launched (a duplicate message)
		}
	}
	if len(live) >= s.cfg.MaxConcurrentJobs {
		s.log.Debug("no free worker slot; job stays queued", "job_id", j.ID, "live", len(live))
		s.retry(ctx, d, s.cfg.CapacityRetryDelay)
		return nil
	}

	w, err := s.cfg.Launcher.Launch(ctx, launcher.Request{
		JobID: j.ID, TraceID: j.TraceID, EstimatedSizeBytes: j.Spec.Options.EstimatedSizeBytes,
	})
	if err != nil {
		return s.launchFailed(ctx, d, j, err)
	}
	instanceType := w.InstanceType
	if instanceType == "" {
		instanceType = s.cfg.InstanceType
	}
	logURL := ""
	if s.cfg.Logs != nil {
		logURL = s.cfg.Logs.URL(j.ID, w.ID)
	}
	rec, err := s.cfg.Store.Apply(ctx, j.ID, jobs.Provisioned(w.ID, instanceType, logURL))
	if err != nil {
		cur, gerr := s.cfg.Store.Get(ctx, j.ID)
		if gerr == nil && cur.Status == jobs.StatusRunning && cur.WorkerID == w.ID {
			rec = cur // the worker started before its launch was recorded
		} else {
			// The job ended meanwhile (cancelled), or the store failed: the
			// worker must not run unrecorded.
			s.stopAsync(w.ID, j.ID)
			if gerr == nil && cur.Status != jobs.StatusProvisioning {
				return s.ack(ctx, d)
			}
			s.retry(ctx, d, s.launchBackoff(d.ReceiveCount))
			return fmt.Errorf("record worker %s of job %s: %w", w.ID, j.ID, err)
		}
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.JobProvisioned(instanceType, sizeBand(j.Spec.Options.EstimatedSizeBytes), s.cfg.Now().Sub(provisioningSince(j)))
	}
	s.log.Info("worker launched", "job_id", j.ID, "trace_id", j.TraceID, "worker_id", w.ID,
		"instance_type", instanceType, "attempt", rec.Attempts)
	return s.ack(ctx, d)
}

func (s *Service) launchFailed(ctx context.Context, d queue.Delivery, j *jobs.Job, lerr error) error {
	if s.cfg.Metrics != nil {
		it := s.cfg.InstanceType
		if s.cfg.InstanceTypeFor != nil {
			it = s.cfg.InstanceTypeFor(j)
		}
		s.cfg.Metrics.ProvisioningFailed(it, s.cfg.FailureReason(lerr))
	}
	if d.ReceiveCount >= queue.MaxReceiveCount {
		reason := fmt.Sprintf("could not start a worker after %d attempts: %v", d.ReceiveCount, lerr)
		s.note(ctx, j, "%s; the job failed", reason)
		if _, err := s.cfg.Store.Apply(ctx, j.ID, jobs.Failed(reason)); err != nil && !isConflict(err) {
			s.retry(ctx, d, s.launchBackoff(d.ReceiveCount))
			return fmt.Errorf("fail job %s after launch failures: %w", j.ID, err)
		}
		s.log.Error("job dead-lettered: worker launch kept failing", "job_id", j.ID, "trace_id", j.TraceID,
			"attempts", d.ReceiveCount, "err", lerr)
		return s.ack(ctx, d)
	}
	delay := s.launchBackoff(d.ReceiveCount)
	s.note(ctx, j, "could not start a worker (attempt %d of %d): %v; retrying in %s",
		d.ReceiveCount, queue.MaxReceiveCount, lerr, delay)
	s.log.Warn("worker launch failed; will retry", "job_id", j.ID, "attempt", d.ReceiveCount, "retry_in", delay, "err", lerr)
	s.retry(ctx, d, delay)
	return nil
}

func (s *Service) launchBackoff(receiveCount int) time.Duration {
	d := s.cfg.LaunchRetryDelay
	for i := 1; i < receiveCount && d < MaxLaunchRetryDelay; i++ {
		d *= 2
	}
	return min(d, MaxLaunchRetryDelay)
}

func (s *Service) ack(ctx context.Context, d queue.Delivery) error {
	if err := s.cfg.Queue.Ack(ctx, d); err != nil {
		return fmt.Errorf("acknowledge message of job %s: %w", d.JobID, err)
	}
	return nil
}

func (s *Service) retry(ctx context.Context, d queue.Delivery, delay time.Duration) {
	if err := s.cfg.Queue.Retry(context.WithoutCancel(ctx), d, delay); err != nil {
		// The lease runs out by itself; the message comes back then.
		s.log.Warn("return message to queue", "job_id", d.JobID, "err", err)
	}
}

// CheckOnce runs the rescuer, the timeout check and the reaper once, and
// records finished jobs in the metrics.
func (s *Service) CheckOnce(ctx context.Context) error {
	active, err := s.cfg.Store.Active(ctx)
	if err != nil {
		return err
	}
	live, err := s.cfg.Launcher.List(ctx)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	byJob := map[string][]launcher.Worker{}
	for _, w := range live {
		byJob[w.JobID] = append(byJob[w.JobID], w)
	}
	now := s.cfg.Now()
	activeIDs := make(map[string]bool, len(active))
	var errs []error
	for _, j := range active {
		activeIDs[j.ID] = true
		if err := s.checkJob(ctx, j, byJob[j.ID], now); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.reap(ctx, live, active, now))
	s.observeFinished(ctx, activeIDs)
	return errors.Join(errs...)
}

func (s *Service) checkJob(ctx context.Context, j *jobs.Job, workers []launcher.Worker, now time.Time) error {
	limit := s.timeoutOf(j)
	base := j.CreatedAt
	if j.StartedAt != nil {
		base = *j.StartedAt
	}
	if now.After(base.Add(limit + s.cfg.TimeoutGrace)) {
		return s.endTimedOut(ctx, j, limit, workers)
	}
	alive := len(workers) > 0
	quiet := j.HeartbeatAt == nil || now.Sub(*j.HeartbeatAt) > s.cfg.GoneGrace
	switch j.Status {
	case jobs.StatusRunning:
		var reason string
		switch {
		case j.HeartbeatAt == nil || now.Sub(*j.HeartbeatAt) > s.cfg.HeartbeatTimeout:
			since := "never"
			if j.HeartbeatAt != nil {
				since = now.Sub(*j.HeartbeatAt).Round(time.Second).String() + " ago"
			}
			reason = fmt.Sprintf("worker %s stopped heartbeating (last heartbeat %s)", j.WorkerID, since)
		case !alive && quiet:
			reason = fmt.Sprintf("worker %s is gone", j.WorkerID)
		default:
			return nil
		}
		return s.rescue(ctx, j, reason, workers)
	case jobs.StatusProvisioning:
		if j.WorkerID == "" || alive || !quiet {
			return nil // queued, or its worker is starting
		}
		s.mu.Lock()
		done := s.resent[j.ID] == j.WorkerID
		s.mu.Unlock()
		if done {
			return nil
		}
		if j.Attempts >= s.cfg.MaxAttempts {
			reason := fmt.Sprintf("the worker exited before starting the job, %d times; see the worker's output (serve's data directory, workers/%s.log)", j.Attempts, j.ID)
			return s.fail(ctx, j, reason)
		}
		if err := s.stopWorkers(ctx, j, workers); err != nil {
			return fmt.Errorf("re-send job %s: its launched worker may still start: %w", j.ID, err)
		}
		s.note(ctx, j, "worker %s exited before starting the job; starting another (attempt %d of %d)", j.WorkerID, j.Attempts+1, s.cfg.MaxAttempts)
		if err := s.cfg.Queue.Send(ctx, j.ID); err != nil {
			return fmt.Errorf("re-queue job %s: %w", j.ID, err)
		}
		s.mu.Lock()
		s.resent[j.ID] = j.WorkerID
		s.mu.Unlock()
		s.log.Warn("worker exited before starting; job re-queued", "job_id", j.ID, "worker_id", j.WorkerID)
	}
	return nil
}

// MaxSpotInterruptions bounds the extra workers a job gets, beyond
// MaxAttempts, when its workers are lost to spot interruptions.
const MaxSpotInterruptions = 3

// interrupted asks the launcher (when it can tell) whether the job's
// worker was lost to a spot interruption.
func (s *Service) interrupted(ctx context.Context, j *jobs.Job) bool {
	ir, ok := s.cfg.Launcher.(interface {
		Interrupted(ctx context.Context, workerID string) (bool, error)
	})
	if !ok || j.WorkerID == "" {
		return false
	}
	yes, err := ir.Interrupted(ctx, j.WorkerID)
	if err != nil {
		s.log.Warn("ask whether the worker was interrupted", "job_id", j.ID, "worker_id", j.WorkerID, "err", err)
		return false
	}
	return yes
}

// rescue re-queues a running job whose worker was lost, or fails it once
// it has had MaxAttempts workers (spot interruptions aside).
//
// A job is re-queued only once its old worker is known to be stopped (the
// launcher's Stop succeeded for the recorded worker and every live worker
// of the job): two workers must never write one target. When stopping
// fails the job is left as it is, and the next check tries again; the
// error reaches the operator. The re-queue itself is fenced on the stopped
// worker's lease, so it cannot take the job from a worker it did not stop.
func (s *Service) rescue(ctx context.Context, j *jobs.Job, reason string, workers []launcher.Worker) error {
	stopErr := s.stopWorkers(ctx, j, workers)
	if j.Attempts >= s.cfg.MaxAttempts {
		// Failing starts no other worker; the old one's writes are
		// refused once the job has ended, and the reaper stops it.
		// A spot interruption is not the job's fault: it gets another
		// worker (up to MaxSpotInterruptions more), which resumes from the
		// checkpoint.
		if j.Attempts >= s.cfg.MaxAttempts+MaxSpotInterruptions || !s.interrupted(ctx, j) {
			return s.fail(ctx, j, fmt.Sprintf("%s; gave up after %d attempts", reason, j.Attempts))
		}
		reason += " (spot interruption)"
	}
	if stopErr != nil {
		s.log.Error("lost worker could not be stopped; job not re-queued", "job_id", j.ID, "trace_id", j.TraceID,
			"worker_id", j.WorkerID, "reason", reason, "err", stopErr)
		return fmt.Errorf("rescue job %s (%s): not re-queued while its worker may still run: %w", j.ID, reason, stopErr)
	}
	if _, err := s.cfg.Store.Apply(ctx, j.ID, jobs.Requeued(reason).By(jobs.LeaseOf(j))); err != nil {
		if isConflict(err) {
			return nil // it ended (or moved) meanwhile
		}
		return fmt.Errorf("re-queue job %s: %w", j.ID, err)
	}
	if err := s.cfg.Queue.Send(ctx, j.ID); err != nil {
		// Never leave a provisioning job without a message.
		s.log.Error("send re-queued job", "job_id", j.ID, "err", err)
		return s.fail(ctx, j, reason+"; and it could not be queued again")
	}
	s.note(ctx, j, "%s; a new worker resumes the job from its checkpoint (attempt %d of %d)", reason, j.Attempts+1, s.cfg.MaxAttempts)
	s.log.Warn("worker lost; job re-queued", "job_id", j.ID, "trace_id", j.TraceID, "reason", reason, "attempts", j.Attempts)
	return nil
}

// stopWorkers stops, and waits for, the recorded worker of j and every
// live worker of it; the error joins the stops that failed.
func (s *Service) stopWorkers(ctx context.Context, j *jobs.Job, workers []launcher.Worker) error {
	ids := []string{}
	if j.WorkerID != "" {
		ids = append(ids, j.WorkerID)
	}
	for _, w := range workers {
		if w.ID != j.WorkerID {
			ids = append(ids, w.ID)
		}
	}
	var errs []error
	for _, id := range ids {
		if err := s.cfg.Launcher.Stop(ctx, id); err != nil {
			s.log.Warn("stop worker", "job_id", j.ID, "worker_id", id, "err", err)
			errs = append(errs, fmt.Errorf("stop worker %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) fail(ctx context.Context, j *jobs.Job, reason string) error {
	if _, err := s.cfg.Store.Apply(ctx, j.ID, jobs.Failed(reason)); err != nil {
		if isConflict(err) {
			return nil
		}
		return fmt.Errorf("fail job %s: %w", j.ID, err)
	}
	s.note(ctx, j, "job failed: %s", reason)
	s.log.Error("job failed", "job_id", j.ID, "trace_id", j.TraceID, "reason", reason)
	return nil
}

func (s *Service) endTimedOut(ctx context.Context, j *jobs.Job, limit time.Duration, workers []launcher.Worker) error {
	if _, err := s.cfg.Store.Apply(ctx, j.ID, jobs.TimedOut(limit)); err != nil {
		if isConflict(err) {
			return nil
		}
		return fmt.Errorf("time out job %s: %w", j.ID, err)
	}
	s.note(ctx, j, "job exceeded its timeout of %s; stopping its worker", limit)
	s.log.Warn("job timed out", "job_id", j.ID, "trace_id", j.TraceID, "timeout", limit)
	for _, w := range workers {
		s.stopAsync(w.ID, j.ID)
	}
	return nil
}

// reap stops live workers whose job has ended (ReapGrace ago) or is gone,
// and duplicates of a job that has another recorded worker.
func (s *Service) reap(ctx context.Context, live []launcher.Worker, active []*jobs.Job, now time.Time) error {
	byID := make(map[string]*jobs.Job, len(active))
	for _, j := range active {
		byID[j.ID] = j
	}
	var errs []error
	for _, w := range live {
		if j, ok := byID[w.JobID]; ok {
			if j.WorkerID != "" && j.WorkerID != w.ID && now.Sub(w.LaunchedAt) > s.cfg.ReapGrace {
				s.log.Warn("stopping a duplicate worker", "job_id", j.ID, "worker_id", w.ID, "recorded_worker", j.WorkerID)
				s.stopAsync(w.ID, j.ID)
			}
			continue
		}
		j, err := s.cfg.Store.Get(ctx, w.JobID)
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			s.log.Warn("stopping an orphaned worker: its job does not exist", "job_id", w.JobID, "worker_id", w.ID)
			s.stopAsync(w.ID, w.JobID)
		case err != nil:
			errs = append(errs, err)
		case j.Status.Terminal() && (j.CompletedAt == nil || now.Sub(*j.CompletedAt) > s.cfg.ReapGrace):
			s.log.Warn("stopping an orphaned worker: its job has ended", "job_id", j.ID, "worker_id", w.ID, "status", string(j.Status))
			s.stopAsync(w.ID, j.ID)
		}
	}
	return errors.Join(errs...)
}

// observeFinished counts, in the metrics, jobs that were active at the
// previous check and are not now.
func (s *Service) observeFinished(ctx context.Context, active map[string]bool) {
	s.mu.Lock()
	prev := s.prevActive
	s.prevActive = active
	for id := range s.resent {
		if !active[id] {
			delete(s.resent, id)
		}
	}
	s.mu.Unlock()
	if s.cfg.Metrics == nil {
		return
	}
	for id := range prev {
		if active[id] {
			continue
		}
		j, err := s.cfg.Store.Get(ctx, id)
		if err != nil || !j.Status.Terminal() {
			continue
		}
		s.cfg.Metrics.JobFinished(string(j.Spec.Command), string(j.Status), jobDuration(j))
	}
}

// Sweep purges expired job records (and, through AfterSweep, what goes
// with them).
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n, err := s.cfg.Store.Purge(ctx)
	if err != nil {
		return n, err
	}
	if s.cfg.AfterSweep != nil {
		if err := s.cfg.AfterSweep(ctx, s.cfg.Now().Add(-jobs.Retention)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Cancel marks the job cancelled and stops its worker. A job that already
// ended returns an error matching jobs.ErrConflict (api.Canceller).
func (s *Service) Cancel(ctx context.Context, jobID string) error {
	j, err := s.cfg.Store.Apply(ctx, jobID, jobs.Cancelled())
	if err != nil {
		return err
	}
	s.note(ctx, j, "cancelled by user; stopping the worker")
	s.log.Info("job cancelled", "job_id", j.ID, "trace_id", j.TraceID)
	s.stopJobWorkers(ctx, j)
	return nil
}

// stopJobWorkers stops, in the background, the recorded worker of j and
// any live worker of it.
func (s *Service) stopJobWorkers(ctx context.Context, j *jobs.Job) {
	ids := map[string]bool{}
	if j.WorkerID != "" {
		ids[j.WorkerID] = true
	}
	if live, err := s.cfg.Launcher.List(ctx); err == nil {
		for _, w := range live {
			if w.JobID == j.ID {
				ids[w.ID] = true
			}
		}
	}
	for id := range ids {
		s.stopAsync(id, j.ID)
	}
}

func (s *Service) stopAsync(workerID, jobID string) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.cfg.Launcher.Stop(ctx, workerID); err != nil {
			s.log.Warn("stop worker", "job_id", jobID, "worker_id", workerID, "err", err)
		}
	}()
}

// Shutdown stops every live worker and re-queues its job, which resumes
// from its checkpoint when the service runs again. Call it after Run has
// returned.
func (s *Service) Shutdown(ctx context.Context) error {
	defer s.bg.Wait()
	live, err := s.cfg.Launcher.List(ctx)
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	var wg sync.WaitGroup
	stopErrs := make([]error, len(live))
	for i, w := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.cfg.Launcher.Stop(ctx, w.ID); err != nil {
				s.log.Warn("stop worker", "job_id", w.JobID, "worker_id", w.ID, "err", err)
				stopErrs[i] = err
			}
		}()
	}
	wg.Wait()
	var errs []error
	const reason = "the service stopped"
	for i, w := range live {
		if stopErrs[i] != nil {
			// Never re-queue a job whose worker may still run: the next
			// serve's rescuer deals with it once the worker is gone.
			errs = append(errs, fmt.Errorf("job %s not re-queued: stop worker %s: %w", w.JobID, w.ID, stopErrs[i]))
			continue
		}
		j, err := s.cfg.Store.Get(ctx, w.JobID)
		if err != nil {
			continue
		}
		switch {
		case j.Status == jobs.StatusRunning && (j.WorkerID == w.ID || j.WorkerID == ""):
			if _, err := s.cfg.Store.Apply(ctx, j.ID, jobs.Requeued(reason)); err != nil {
				if !isConflict(err) {
					errs = append(errs, fmt.Errorf("re-queue job %s: %w", j.ID, err))
				}
				continue
			}
		case j.Status == jobs.StatusProvisioning && j.WorkerID == w.ID:
			// Its message was acknowledged at launch: send it again.
		default:
			continue
		}
		if err := s.cfg.Queue.Send(ctx, j.ID); err != nil {
			errs = append(errs, fmt.Errorf("re-queue job %s: %w", j.ID, err))
			continue
		}
		s.note(ctx, j, "%s; the job resumes from its checkpoint when the service runs again", reason)
		s.log.Info("worker stopped for shutdown; job re-queued", "job_id", j.ID, "worker_id", w.ID)
	}
	return errors.Join(errs...)
}

// note appends a service line to the job's log.
func (s *Service) note(ctx context.Context, j *jobs.Job, format string, args ...any) {
	if s.cfg.Logs == nil {
		return
	}
	text := fmt.Sprintf("[TRACE:%s] service: %s", j.TraceID, fmt.Sprintf(format, args...))
	if err := s.cfg.Logs.Append(context.WithoutCancel(ctx), j.ID, []joblog.Line{{Time: s.cfg.Now(), Text: text}}); err != nil {
		s.log.Warn("append to job log", "job_id", j.ID, "err", err)
	}
}

func (s *Service) timeoutOf(j *jobs.Job) time.Duration {
	if j.Spec.Options.JobTimeout > 0 {
		return time.Duration(j.Spec.Options.JobTimeout) * time.Second
	}
	if s.cfg.DefaultJobTimeout > 0 {
		return s.cfg.DefaultJobTimeout
	}
	return j.Timeout()
}

// provisioningSince is when j last entered provisioning.
func provisioningSince(j *jobs.Job) time.Time {
	for i := len(j.History) - 1; i >= 0; i-- {
		if j.History[i].Status == jobs.StatusProvisioning {
			return j.History[i].At
		}
	}
	return j.CreatedAt
}

func jobDuration(j *jobs.Job) time.Duration {
	end := j.UpdatedAt
	if j.CompletedAt != nil {
		end = *j.CompletedAt
	}
	return end.Sub(j.CreatedAt)
}

// sizeBand names the guide's size band of an estimated size (the
// InstanceSize metric dimension).
func sizeBand(bytes int64) string {
	const gb = int64(1_000_000_000)
	switch {
	case bytes <= 0:
		return "unknown"
	case bytes < 10*gb:
		return "small"
	case bytes < 100*gb:
		return "medium"
	case bytes <= 1000*gb:
		return "large"
	}
	return "xlarge"
}

func isConflict(err error) bool {
	return errors.Is(err, jobs.ErrConflict) || errors.Is(err, jobs.ErrIllegalTransition) || errors.Is(err, jobs.ErrNotFound)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
