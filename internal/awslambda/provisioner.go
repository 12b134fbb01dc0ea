package awslambda

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher/ec2launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqsqueue"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
)

// Provisioner is the provisioner function: the SQS event source mapping
// hands it up to 10 provisioning messages (body = job id) and it runs each
// through service.HandleDelivery, the code the embedded scheduler runs for
// one delivery: launch an EC2 worker within the concurrency limit and
// record it on the job, acknowledge messages with nothing left to do, and
// after queue.MaxReceiveCount failed launches fail the job with the reason
// (the message would go to the dead-letter queue next).
//
// The response reports every message that must come back
// (ReportBatchItemFailures): a failed launch, returned with the service's
// back-off through ChangeMessageVisibility. Handled messages are deleted
// right away, so a later failure of the invocation cannot replay them.
//
// A message that finds every worker slot taken is not returned (that
// would count a delivery, and enough waiting would dead-letter a job that
// never failed): it is re-sent with a delay as a new message and the old
// one deleted. The job is not failed; it waits as long as its timeout
// allows (the reaper ends it then). Messages the invocation has no time
// left for are re-sent the same way.
//
// The dead-letter queue is an event source of this function too
// (deploy/aws/terraform lambda.tf): a message that arrives from it (its
// eventSourceARN names another queue than SEREN_QUEUE_URL) fails its job
// with the reason, unless a worker was launched for it meanwhile. Without
// that, a job whose message was dead-lettered by something other than a
// counted launch failure (an invocation that timed out or crashed) would
// sit in provisioning until its timeout.
type Provisioner struct {
	set   *backends.Set
	svc   *service.Service
	batch *batchQueue
	cfg   Config
}

// deadlineMargin is kept free at the end of an invocation to report.
const deadlineMargin = 2 * time.Second

// NewProvisioner opens the backends and the service.
func NewProvisioner(ctx context.Context, cfg Config) (*Provisioner, error) {
	set, err := cfg.open(ctx, backends.PartStore|backends.PartQueue|backends.PartLauncher|backends.PartMetrics|backends.PartLogs)
	if err != nil {
		return nil, err
	}
	batch := &batchQueue{Queue: set.Queue}
	instanceType := cfg.Backends.AWS.WorkerInstanceType
	if instanceType == "" {
		instanceType = "auto" // chosen per job from its size (InstanceTypeFor)
	}
	p := &Provisioner{set: set, batch: batch, cfg: cfg}
	svc, err := service.New(service.Config{
		Store: set.Store, Queue: batch, Launcher: set.Launcher, Metrics: set.Metrics, Logs: set.Logs,
		Logger: cfg.Logger.With("component", "provisioner"), Now: cfg.Now,
		MaxConcurrentJobs:  cfg.MaxConcurrentJobs,
		InstanceType:       instanceType,
		InstanceTypeFor:    p.instanceTypeFor,
		FailureReason:      failureReason,
		CapacityRetryDelay: cfg.CapacityRetryDelay,
		LaunchRetryDelay:   cfg.LaunchRetryDelay,
	})
	if err != nil {
		set.Close()
		return nil, err
	}
	p.svc = svc
	return p, nil
}

// failureReason is the ProvisioningFailed metric's Reason: the EC2 error
// code when there is one.
func failureReason(err error) string {
	if code := ec2launcher.ErrorCode(err); code != "" {
		return code
	}
	if errors.Is(err, launcher.ErrCapacity) {
		return "capacity"
	}
	return "launch_error"
}

// Close releases the backends.
func (p *Provisioner) Close() error { return p.set.Close() }

// Handle processes one SQS batch.
func (p *Provisioner) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	log := p.cfg.Logger
	defer finish(ctx, p.svc, p.set, log)
	p.batch.reset()

	var resp events.SQSEventResponse
	fail := func(m events.SQSMessage) {
		resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
	}
	work := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		work, cancel = context.WithDeadline(ctx, dl.Add(-deadlineMargin))
		defer cancel()
	}

	free, err := p.svc.FreeSlots(work)
	if err != nil {
		// Nothing was touched: every message comes back after its
		// visibility timeout.
		log.Error("count live workers; returning the batch", "err", err, "messages", len(ev.Records))
		for _, m := range ev.Records {
			fail(m)
		}
		return resp, nil
	}
	for i, m := range ev.Records {
		if work.Err() != nil {
			log.Warn("out of time; re-sending the rest of the batch", "messages", len(ev.Records)-i)
			for _, rest := range ev.Records[i:] {
				if p.fromDeadLetters(rest) || !p.resend(ctx, sqsqueue.Delivery(rest.Body, rest.ReceiptHandle, rest.Attributes), 0) {
					fail(rest)
				}
			}
			break
		}
		d := sqsqueue.Delivery(m.Body, m.ReceiptHandle, m.Attributes)
		if p.fromDeadLetters(m) {
			if !p.failDeadLettered(work, d) {
				fail(m)
			}
			continue
		}
		if free <= 0 {
			if !p.waitForSlot(work, d) {
				fail(m)
			}
			continue
		}
		// Counted here, not from a new listing: an instance launched a
		// moment ago may be missing from DescribeInstances still.
		free--
		err := p.svc.HandleDelivery(work, d)
		acked, retried := p.batch.outcome(d)
		if err != nil {
			log.Error("provision", "job_id", d.JobID, "receive_count", d.ReceiveCount, "err", err)
		}
		if retried || (err != nil && !acked) {
			fail(m)
		}
	}
	return resp, nil
}

// instanceTypeFor is the instance type the launcher picks for the job
// (its size band, overrides applied): the InstanceType dimension of
// ProvisioningFailed, which must name the type that failed, not "auto".
func (p *Provisioner) instanceTypeFor(j *jobs.Job) string {
	if l, ok := p.set.Launcher.(interface {
		InstanceFor(estimatedBytes int64) ec2launcher.Band
	}); ok {
		return l.InstanceFor(j.Spec.Options.EstimatedSizeBytes).InstanceType
	}
	if t := p.cfg.Backends.AWS.WorkerInstanceType; t != "" {
		return t
	}
	return "unknown"
}

// fromDeadLetters reports whether m comes from the dead-letter queue: its
// source queue is not the provisioning queue.
func (p *Provisioner) fromDeadLetters(m events.SQSMessage) bool {
	if m.EventSourceARN == "" {
		return false
	}
	u, ok := p.set.Queue.(interface{ URL() string })
	if !ok {
		return false
	}
	name := u.URL()[strings.LastIndex(u.URL(), "/")+1:]
	return m.EventSourceARN[strings.LastIndex(m.EventSourceARN, ":")+1:] != name
}

// failDeadLettered fails the job of a dead-lettered message, unless a
// worker was launched for it or it ended meanwhile. It reports whether the
// message is dealt with (Lambda then deletes it from the dead-letter
// queue).
func (p *Provisioner) failDeadLettered(ctx context.Context, d queue.Delivery) bool {
	log := p.cfg.Logger.With("job_id", d.JobID)
	j, err := p.set.Store.Get(ctx, d.JobID)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return true
	case err != nil:
		log.Error("load dead-lettered job", "err", err)
		return false
	case j.Status != jobs.StatusProvisioning || j.WorkerID != "":
		// Running, ended, or launched and booting: nothing to fail (the
		// reaper watches a worker that never starts).
		log.Info("dead-lettered message of a job that needs no launch", "status", string(j.Status), "worker_id", j.WorkerID)
		return true
	}
	reason := fmt.Sprintf("no worker could be started: the provisioning message was dead-lettered after %d deliveries (the provisioner's log has each attempt)", d.ReceiveCount)
	if _, err := p.set.Store.Apply(ctx, j.ID, jobs.Failed(reason)); err != nil {
		if errors.Is(err, jobs.ErrConflict) || errors.Is(err, jobs.ErrIllegalTransition) {
			return false // changed meanwhile: look again on the next delivery
		}
		log.Error("fail dead-lettered job", "err", err)
		return false
	}
	if p.set.Metrics != nil {
		p.set.Metrics.ProvisioningFailed(p.instanceTypeFor(j), "dead_lettered")
	}
	log.Error("job failed: its provisioning message was dead-lettered", "trace_id", j.TraceID, "receive_count", d.ReceiveCount)
	return true
}

// resend replaces a message by a new one visible after delay (a return
// would count a delivery). It reports whether that worked.
func (p *Provisioner) resend(ctx context.Context, d queue.Delivery, delay time.Duration) bool {
	s, ok := p.set.Queue.(interface {
		SendAfter(ctx context.Context, jobID string, delay time.Duration) error
	})
	if !ok {
		return false
	}
	if err := s.SendAfter(ctx, d.JobID, delay); err != nil {
		p.cfg.Logger.Warn("re-send message", "job_id", d.JobID, "err", err)
		return false
	}
	if err := p.set.Queue.Ack(ctx, d); err != nil {
		// The old message comes back too; the service acknowledges a
		// job's second message once the job has its worker.
		p.cfg.Logger.Warn("delete re-sent message", "job_id", d.JobID, "err", err)
	}
	return true
}

// waitForSlot puts back a message that found no free worker slot. It
// reports whether the message is dealt with (true) or must be returned as
// a batch item failure.
func (p *Provisioner) waitForSlot(ctx context.Context, d queue.Delivery) bool {
	log := p.cfg.Logger.With("job_id", d.JobID)
	j, err := p.set.Store.Get(ctx, d.JobID)
	switch {
	case errors.Is(err, jobs.ErrNotFound) || (err == nil && j.Status != jobs.StatusProvisioning):
		// Nothing to launch (purged, cancelled while queued): done.
		if err := p.set.Queue.Ack(ctx, d); err != nil {
			log.Warn("delete message", "err", err)
		}
		return true
	case err != nil:
		log.Error("load job", "err", err)
		return false
	}
	if s, ok := p.set.Queue.(interface {
		SendAfter(ctx context.Context, jobID string, delay time.Duration) error
	}); ok {
		err := s.SendAfter(ctx, d.JobID, p.cfg.CapacityRetryDelay)
		if err == nil {
			if err := p.set.Queue.Ack(ctx, d); err != nil {
				// The old message comes back too; the service acknowledges
				// a job's second message once the job has its worker.
				log.Warn("delete re-sent message", "err", err)
			}
			log.Info("no free worker slot; job waits in the queue", "trace_id", j.TraceID, "retry_in", p.cfg.CapacityRetryDelay.String())
			return true
		}
		log.Warn("re-send waiting job; returning its message instead", "err", err)
	}
	if err := p.set.Queue.Retry(context.WithoutCancel(ctx), d, p.cfg.CapacityRetryDelay); err != nil {
		log.Warn("return message to queue", "err", err)
	}
	return false
}

// batchQueue is the queue the service sees in the provisioner: Ack and
// Retry go to SQS and are remembered per message, so Handle knows which
// messages to report as batch item failures.
type batchQueue struct {
	queue.Queue

	mu      sync.Mutex
	acked   map[string]bool
	retried map[string]bool
}

func (b *batchQueue) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.acked, b.retried = map[string]bool{}, map[string]bool{}
}

func (b *batchQueue) outcome(d queue.Delivery) (acked, retried bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acked[d.Receipt], b.retried[d.Receipt]
}

func (b *batchQueue) Ack(ctx context.Context, d queue.Delivery) error {
	b.mu.Lock()
	b.acked[d.Receipt] = true
	b.mu.Unlock()
	if err := b.Queue.Ack(ctx, d); err != nil {
		// Not returned as a failure: Lambda deletes a message the
		// response does not list.
		return fmt.Errorf("delete message (Lambda deletes it instead): %w", err)
	}
	return nil
}

func (b *batchQueue) Retry(ctx context.Context, d queue.Delivery, delay time.Duration) error {
	b.mu.Lock()
	b.retried[d.Receipt] = true
	b.mu.Unlock()
	return b.Queue.Retry(ctx, d, delay)
}
