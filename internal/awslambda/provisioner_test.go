package awslambda_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
)

// submitter is the API function in-process, for tests that need queued
// jobs the way the coordinator queues them.
type submitter struct {
	s  *stack
	fn *awslambda.API
}

func newSubmitter(t *testing.T, s *stack, cfg awslambda.Config) *submitter {
	t.Helper()
	fn, err := awslambda.NewAPI(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fn.Close() })
	return &submitter{s: s, fn: fn}
}

// submit posts an init job of the given estimated size and returns its id.
func (sb *submitter) submit(t *testing.T, size int64) string {
	t.Helper()
	return sb.submitBody(t, submitBody(t, "postgresql://app:pw@db.example.com/app", "postgresql://app:pw@target.example.com/app",
		jobs.Filter{}, jobs.Options{NoSync: true, EstimatedSizeBytes: size}))
}

func (sb *submitter) submitBody(t *testing.T, body []byte) string {
	t.Helper()
	resp, err := sb.fn.Handle(context.Background(), sb.s.apiEvent(t, http.MethodPost, "/jobs", body, sb.s.apiKey))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %v %d %s", err, resp.StatusCode, resp.Body)
	}
	var created api.SubmitResponse
	mustJSON(t, []byte(resp.Body), &created)
	return created.JobID
}

func newProvisioner(t *testing.T, cfg awslambda.Config) *awslambda.Provisioner {
	t.Helper()
	p, err := awslambda.NewProvisioner(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// receiveAll receives until n messages of queueURL are in hand.
func (s *stack) receiveAll(t *testing.T, queueURL string, n int) []sqstypes.Message {
	t.Helper()
	var msgs []sqstypes.Message
	deadline := time.Now().Add(20 * time.Second)
	for len(msgs) < n && time.Now().Before(deadline) {
		msgs = append(msgs, s.receive(t, queueURL, time.Second)...)
	}
	if len(msgs) != n {
		t.Fatalf("received %d messages, want %d", len(msgs), n)
	}
	return msgs
}

func failedIDs(resp events.SQSEventResponse) map[string]bool {
	out := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		out[f.ItemIdentifier] = true
	}
	return out
}

// lambdaContext is an invocation context with the provisioner's timeout.
func lambdaContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestProvisionerLaunchesOneWorkerPerJob(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, nil)
	sb := newSubmitter(t, s, cfg)
	small, medium := sb.submit(t, 5<<30), sb.submit(t, 50_000_000_000)

	msgs := s.receiveAll(t, s.queueURL, 2)
	p := newProvisioner(t, cfg)
	resp, err := p.Handle(lambdaContext(t), s.sqsEvent(t, msgs))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle: %v, failures %v", err, resp.BatchItemFailures)
	}
	for id, wantType := range map[string]string{small: "t3.medium", medium: "c5.large"} {
		j := s.job(t, id)
		if j.Status != jobs.StatusProvisioning || !strings.HasPrefix(j.WorkerID, "i-") || j.InstanceType != wantType || j.Attempts != 1 {
			t.Fatalf("job %s: status %s worker %q type %q attempts %d", id, j.Status, j.WorkerID, j.InstanceType, j.Attempts)
		}
		if !strings.Contains(j.LogURL, j.WorkerID) {
			t.Errorf("log URL %q does not name the worker's stream %s", j.LogURL, j.WorkerID)
		}
		inst := s.instance(t, j.WorkerID)
		if string(inst.InstanceType) != wantType {
			t.Errorf("instance %s is %s, want %s", j.WorkerID, inst.InstanceType, wantType)
		}
	}
	if v, f, d := s.queued(t, s.queueURL); v+f+d != 0 {
		t.Errorf("queue still holds %d+%d+%d messages; handled ones must be deleted", v, f, d)
	}
	if sum, ms := s.metricSum(t, "JobProvisioned"); sum != 2 {
		t.Errorf("JobProvisioned sum %v (%v), want 2", sum, ms)
	}
	// ProvisioningDuration is launch to running (the worker records it);
	// the provisioner's view would include the queue wait.
	if _, ms := s.metricSum(t, "ProvisioningDuration"); len(ms) != 0 {
		t.Errorf("the provisioner recorded ProvisioningDuration %v (queue wait included)", ms)
	}

	// SQS delivers at least once: the same job id again launches nothing.
	if _, err := s.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(s.queueURL), MessageBody: aws.String(small)}); err != nil {
		t.Fatal(err)
	}
	resp, err = p.Handle(lambdaContext(t), s.sqsEvent(t, s.receiveAll(t, s.queueURL, 1)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("duplicate: %v, failures %v", err, resp.BatchItemFailures)
	}
	if live := s.live(t); len(live) != 2 {
		t.Errorf("%d live workers after a duplicate message, want 2", len(live))
	}
}

// TestProvisionerFailedLaunches: a failed launch is reported as a batch
// item failure (the message comes back after a back-off) and the job waits;
// on the last delivery (queue.MaxReceiveCount) the job is failed with the
// reason and the message deleted, before SQS would dead-letter it.
func TestProvisionerFailedLaunches(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, func(env map[string]string) {
		env[backends.EnvWorkerInstanceProfile] = "no-such-profile" // moto refuses the launch
	})
	sb := newSubmitter(t, s, cfg)

	// The job whose message is on its last delivery: received and put
	// back MaxReceiveCount-1 times already.
	last := sb.submit(t, 1<<30)
	for i := 1; i < queue.MaxReceiveCount; i++ {
		m := s.receiveAll(t, s.queueURL, 1)[0]
		if _, err := s.sqs.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(s.queueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
		}); err != nil {
			t.Fatal(err)
		}
	}
	first := sb.submit(t, 1<<30)

	msgs := s.receiveAll(t, s.queueURL, 2)
	ev := s.sqsEvent(t, msgs)
	msgOf := map[string]string{}
	for _, r := range ev.Records {
		msgOf[r.Body] = r.MessageId
		want := "1"
		if r.Body == last {
			want = "5"
		}
		if r.Attributes["ApproximateReceiveCount"] != want {
			t.Fatalf("job %s: receive count %s, want %s", r.Body, r.Attributes["ApproximateReceiveCount"], want)
		}
	}

	resp, err := newProvisioner(t, cfg).Handle(lambdaContext(t), ev)
	if err != nil {
		t.Fatal(err)
	}
	failed := failedIDs(resp)
	if len(failed) != 1 || !failed[msgOf[first]] {
		t.Fatalf("batch item failures %v; want only the first attempt's message %s", resp.BatchItemFailures, msgOf[first])
	}
	if j := s.job(t, first); j.Status != jobs.StatusProvisioning || j.WorkerID != "" {
		t.Errorf("job after one failed launch: %s worker %q; want it still queued", j.Status, j.WorkerID)
	}
	j := s.job(t, last)
	if j.Status != jobs.StatusFailed || !strings.Contains(j.Error, "could not start a worker after 5 attempts") {
		t.Errorf("job on its last delivery: %s %q; want failed with the reason", j.Status, j.Error)
	}
	// The failed job's message is gone (not left for the DLQ); the other
	// one is back in the queue after its back-off.
	if v, f, d := s.queued(t, s.queueURL); v+f+d != 1 {
		t.Errorf("queue holds %d+%d+%d messages, want 1", v, f, d)
	}
	if v, f, d := s.queued(t, s.dlqURL); v+f+d != 0 {
		t.Errorf("DLQ holds %d+%d+%d messages, want 0", v, f, d)
	}
	sum, ms := s.metricSum(t, "ProvisioningFailed")
	if sum != 2 || len(ms) == 0 || dims(ms[0])["Reason"] == "" {
		t.Errorf("ProvisioningFailed sum %v metrics %v", sum, ms)
	}
}

// TestProvisionerAtCapacityKeepsJobsQueued: with every worker slot taken a
// job waits in the queue as long as it takes - it is neither failed nor
// dead-lettered, however many times it finds no slot - and is launched as
// soon as a slot frees.
func TestProvisionerAtCapacityKeepsJobsQueued(t *testing.T) {
	s := newStack(t)
	s.maxConcurrent = 1
	cfg := s.config(t, nil)
	cfg.CapacityRetryDelay = time.Second
	sb := newSubmitter(t, s, cfg)
	p := newProvisioner(t, cfg)

	blocker, err := s.launcher(t).Launch(context.Background(), launcher.Request{JobID: "another-job"})
	if err != nil {
		t.Fatal(err)
	}
	id := sb.submit(t, 1<<30)
	for round := 1; round <= queue.MaxReceiveCount+2; round++ {
		msgs := s.receiveAll(t, s.queueURL, 1)
		if got := msgs[0].Attributes["ApproximateReceiveCount"]; got != "1" {
			t.Fatalf("round %d: receive count %s; a waiting job must come back as a new message", round, got)
		}
		resp, err := p.Handle(lambdaContext(t), s.sqsEvent(t, msgs))
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("round %d: %v, failures %v", round, err, resp.BatchItemFailures)
		}
		if j := s.job(t, id); j.Status != jobs.StatusProvisioning || j.WorkerID != "" || j.Attempts != 0 {
			t.Fatalf("round %d: job %s worker %q attempts %d", round, j.Status, j.WorkerID, j.Attempts)
		}
	}
	if v, f, d := s.queued(t, s.dlqURL); v+f+d != 0 {
		t.Errorf("DLQ holds %d+%d+%d messages", v, f, d)
	}

	if err := s.launcher(t).Stop(context.Background(), blocker.ID); err != nil {
		t.Fatal(err)
	}
	resp, err := p.Handle(lambdaContext(t), s.sqsEvent(t, s.receiveAll(t, s.queueURL, 1)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("after a slot freed: %v, failures %v", err, resp.BatchItemFailures)
	}
	if j := s.job(t, id); !strings.HasPrefix(j.WorkerID, "i-") {
		t.Fatalf("job not launched once a slot freed: %s worker %q", j.Status, j.WorkerID)
	}
	if v, f, d := s.queued(t, s.queueURL); v+f+d != 0 {
		t.Errorf("queue still holds %d+%d+%d messages", v, f, d)
	}
}

// A job cancelled while it waited for a slot leaves the queue without a
// launch, even at capacity.
func TestProvisionerDropsMessagesOfEndedJobs(t *testing.T) {
	s := newStack(t)
	s.maxConcurrent = 1
	cfg := s.config(t, nil)
	sb := newSubmitter(t, s, cfg)
	if _, err := s.launcher(t).Launch(context.Background(), launcher.Request{JobID: "another-job"}); err != nil {
		t.Fatal(err)
	}
	id := sb.submit(t, 1<<30)
	if _, err := s.store(t, nil).Apply(context.Background(), id, jobs.Cancelled()); err != nil {
		t.Fatal(err)
	}
	resp, err := newProvisioner(t, cfg).Handle(lambdaContext(t), s.sqsEvent(t, s.receiveAll(t, s.queueURL, 1)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("%v, failures %v", err, resp.BatchItemFailures)
	}
	if v, f, d := s.queued(t, s.queueURL); v+f+d != 0 {
		t.Errorf("queue still holds %d+%d+%d messages", v, f, d)
	}
	if live := s.live(t); len(live) != 1 {
		t.Errorf("%d live workers, want only the other job's", len(live))
	}
}

// deadLetter receives the queue's messages without deleting them, as
// invocations that time out or crash do, until SQS moves them to the DLQ;
// it returns them as received from the DLQ.
func (s *stack) deadLetter(t *testing.T, n int) []sqstypes.Message {
	t.Helper()
	ctx := context.Background()
	var dead []sqstypes.Message
	deadline := time.Now().Add(60 * time.Second)
	for len(dead) < n && time.Now().Before(deadline) {
		// A 1 s lease, never deleted: each receive counts a delivery.
		if _, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(s.queueURL), MaxNumberOfMessages: 10, VisibilityTimeout: 1, WaitTimeSeconds: 2,
		}); err != nil {
			t.Fatal(err)
		}
		out, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(s.dlqURL), MaxNumberOfMessages: 10, VisibilityTimeout: 120,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, out.Messages...)
	}
	if len(dead) != n {
		t.Fatalf("%d messages reached the DLQ, want %d", len(dead), n)
	}
	return dead
}

// A job whose provisioning message is dead-lettered without a counted
// launch failure (here: received until the redrive policy moves it, as
// timed-out invocations do) must not sit in provisioning until its
// timeout: the provisioner, fed from the DLQ, fails it with the reason,
// and launches nothing. A job that has its worker already is left alone.
func TestProvisionerFailsDeadLetteredJobs(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, nil)
	sb := newSubmitter(t, s, cfg)
	lost := sb.submit(t, 5_000_000_000)
	launched, _ := s.runningJob(t, time.Now(), nil)
	if err := sqsqueueSend(s, launched.ID); err != nil {
		t.Fatal(err)
	}

	dead := s.deadLetter(t, 2)
	p := newProvisioner(t, cfg)
	resp, err := p.Handle(lambdaContext(t), s.sqsEventFrom(t, dead, s.dlqURL))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 0 {
		t.Errorf("batch item failures %v; every dead letter is dealt with", resp.BatchItemFailures)
	}
	j := s.job(t, lost)
	if j.Status != jobs.StatusFailed || !strings.Contains(j.Error, "dead-lettered") {
		t.Errorf("dead-lettered job: %s %q; want failed with the reason", j.Status, j.Error)
	}
	if j := s.job(t, launched.ID); j.Status != jobs.StatusRunning {
		t.Errorf("job with a worker: %s %q; want it left running", j.Status, j.Error)
	}
	for _, w := range s.live(t) {
		if w.JobID == lost {
			t.Errorf("a worker %s was launched for the dead-lettered job", w.ID)
		}
	}
}

func sqsqueueSend(s *stack, jobID string) error {
	_, err := s.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(s.queueURL), MessageBody: aws.String(jobID)})
	return err
}
