package awslambda_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher/ec2launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqsqueue"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
)

// reclaimed makes DescribeInstances answer, for the given instances, what
// EC2 answers for a reclaimed spot instance (state reason
// Server.SpotInstanceTermination): moto cannot interrupt spot capacity, so
// the reason is put into its real answer.
func reclaimed(ids map[string]bool) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("spotReclaimed",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if d, ok := out.Result.(*ec2.DescribeInstancesOutput); ok && err == nil {
					for r := range d.Reservations {
						for i := range d.Reservations[r].Instances {
							inst := &d.Reservations[r].Instances[i]
							if ids[aws.ToString(inst.InstanceId)] {
								inst.StateReason = &ec2types.StateReason{Code: aws.String(ec2launcher.SpotInterruptionCode),
									Message: aws.String("Server.SpotInstanceTermination: Spot instance termination")}
							}
						}
					}
				}
				return out, md, err
			}), middleware.Before)
	}
}

// A worker lost to a spot interruption does not fail its job, even on the
// AWS reaper's single attempt: the job is re-queued (provisioning, a new
// message), the provisioner launches a new worker, and that worker resumes
// from the checkpoint. A worker lost otherwise still fails the job.
func TestSpotInterruptionRequeuesTheJob(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	ago := time.Now().Add(-10 * time.Minute)
	spot, spotW := s.runningJob(t, ago, nil)
	plain, plainW := s.runningJob(t, ago, nil)
	for _, id := range []string{spotW.ID, plainW.ID} { // both instances are gone
		if _, err := s.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
			t.Fatal(err)
		}
	}

	client := ec2.NewFromConfig(s.cfg, func(o *ec2.Options) {
		o.APIOptions = append(o.APIOptions, reclaimed(map[string]bool{spotW.ID: true}))
	})
	l, err := ec2launcher.New(client, ec2launcher.Options{AMI: s.ami, Deployment: s.deployment})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqsqueue.NewFromConfig(s.cfg, s.queueURL)
	if err != nil {
		t.Fatal(err)
	}
	// The reaper's service settings (NewReaper): one attempt per job.
	svc, err := service.New(service.Config{Store: s.store(t, nil), Queue: q, Launcher: l, MaxAttempts: 1,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	svc.Wait()

	j := s.job(t, spot.ID)
	if j.Status != jobs.StatusProvisioning || j.WorkerID != "" {
		t.Fatalf("interrupted job: %s worker %q error %q; want it re-queued", j.Status, j.WorkerID, j.Error)
	}
	if j := s.job(t, plain.ID); j.Status != jobs.StatusFailed {
		t.Errorf("job whose worker died otherwise: %s; want failed", j.Status)
	}

	// The re-queued job's message launches a new worker.
	p := newProvisioner(t, s.config(t, nil))
	resp, err := p.Handle(lambdaContext(t), s.sqsEvent(t, s.receiveAll(t, s.queueURL, 1)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("provisioner: %v, failures %v", err, resp.BatchItemFailures)
	}
	j = s.job(t, spot.ID)
	if !strings.HasPrefix(j.WorkerID, "i-") || j.WorkerID == spotW.ID || j.Attempts != 2 {
		t.Errorf("after re-queue: worker %q attempts %d; want a new worker, attempt 2", j.WorkerID, j.Attempts)
	}
}
