package awslambda

import (
	"context"
	"errors"
	"fmt"
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
// allows (the reaper ends it then).
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
		instanceType = "auto" // chosen per job from its size; unknown when the launch failed
	}
	svc, err := service.New(service.Config{
		Store: set.Store, Queue: batch, Launcher: set.Launcher, Metrics: set.Metrics, Logs: set.Logs,
		Logger: cfg.Logger.With("component", "provisioner"), Now: cfg.Now,
		MaxConcurrentJobs:  cfg.MaxConcurrentJobs,
		InstanceType:       instanceType,
		FailureReason:      failureReason,
		CapacityRetryDelay: cfg.CapacityRetryDelay,
		LaunchRetryDelay:   cfg.LaunchRetryDelay,
	})
	if err != nil {
		set.Close()
		return nil, err
	}
	return &Provisioner{set: set, svc: svc, batch: batch, cfg: cfg}, nil
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
			log.Warn("out of time; returning the rest of the batch", "messages", len(ev.Records)-i)
			for _, rest := range ev.Records[i:] {
				fail(rest)
			}
			break
		}
		d := sqsqueue.Delivery(m.Body, m.ReceiptHandle, m.Attributes)
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
