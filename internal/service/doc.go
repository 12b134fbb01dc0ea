// Package service runs the job service's background work: the provisioner
// (queue → worker launch, within the concurrent-worker limit, dead-letter
// after queue.MaxReceiveCount failed launches), the checker (stale-job
// rescuer, job timeouts, orphan reaper, finished-job metrics), the TTL
// sweeper, and Cancel for the API. It sees the pieces only through their
// interfaces (jobstore.Store, queue.Queue, launcher.Launcher,
// telemetry.Metrics, joblog.Log), so the same code drives local worker
// processes and EC2 workers.
//
// Who does what (docs/job-states.md has the table):
//
//   - provisioner: receives a job id only when a worker slot is free;
//     acknowledges messages of jobs that are no longer provisioning or
//     already have a live worker; launches a worker and records it
//     (jobs.Provisioned); on a launch error retries with backoff and, after
//     queue.MaxReceiveCount deliveries, fails the job with the reason (the
//     dead-letter decision). A message that finds every slot taken goes back
//     to the queue with a delay; the job is not failed.
//   - checker, every CheckInterval:
//     a running job whose heartbeat is older than HeartbeatTimeout, or
//     whose worker is gone, is re-queued (jobs.Requeued; the next worker
//     resumes from the engine's checkpoint on the target) until it has had
//     MaxAttempts workers, then failed with the reason. It is re-queued
//     only after the launcher's Stop succeeded for its recorded worker and
//     every live worker of it (fenced on that worker's lease); when a stop
//     fails the job is left as it is and the error reported, never handed
//     to a second worker while the first may still run; a provisioning job
//     whose launched worker died before starting is re-sent, or failed
//     after MaxAttempts; a job past its timeout (plus TimeoutGrace: the
//     worker normally ends it itself) is ended as timeout and its worker
//     stopped; a live worker whose job ended more than ReapGrace ago, or was
//     purged, is stopped (orphan reaper); jobs seen active last time and
//     terminal now are counted in the JobFinished metric.
//   - sweeper, every SweepInterval: deletes job records past their
//     ExpiresAt (30 days) and whatever AfterSweep cleans with them.
//   - Cancel marks the job cancelled first (so the worker's own final
//     transition loses the race) and then stops its worker.
//   - Shutdown (serve's graceful stop) stops the live workers and re-queues
//     their jobs, which resume from their checkpoints when serve runs again
//     (only the jobs whose worker it did stop).
//
// Times come from Config.Now, so tests drive heartbeats and timeouts with a
// fake clock; the loops' intervals are Config fields.
package service
