package awslambda_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// Two deployments (dev and prod, say) in one account: each counts, lists
// and reaps only its own workers. Deployment A has a limit of one worker
// while B runs two; A's provisioner still launches A's job (B's workers
// do not count against A's limit), A's reaper leaves B's workers alone
// (B's orphan is not A's orphan: its job is in B's table, not A's), and
// B's own reaper then ends B's orphan.
func TestTwoDeploymentsInOneAccount(t *testing.T) {
	a, b := newStack(t), newStack(t)
	ctx := context.Background()
	ago := time.Now().Add(-10 * time.Minute)
	_, bHealthy := b.runningJob(t, time.Now(), nil)
	completed := jobs.Completed(nil)
	_, bOrphan := b.runningJob(t, ago, &completed)

	a.maxConcurrent = 1
	aCfg := a.config(t, nil)
	job := newSubmitter(t, a, aCfg).submit(t, 5_000_000_000)
	p := newProvisioner(t, aCfg)
	resp, err := p.Handle(lambdaContext(t), a.sqsEvent(t, a.receiveAll(t, a.queueURL, 1)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("A's provisioner: %v, failures %v", err, resp.BatchItemFailures)
	}
	aJob := a.job(t, job)
	if !strings.HasPrefix(aJob.WorkerID, "i-") {
		t.Fatalf("A's job has no worker (%s %q): B's workers were counted against A's limit", aJob.Status, aJob.Error)
	}
	if ws := a.live(t); len(ws) != 1 || ws[0].ID != aJob.WorkerID {
		t.Errorf("A lists %+v; want only its own worker %s", ws, aJob.WorkerID)
	}

	var ev events.EventBridgeEvent
	loadEvent(t, "scheduled-event.json", &ev)
	ra, err := awslambda.NewReaper(ctx, aCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if err := ra.Handle(lambdaContext(t), ev); err != nil {
		t.Fatal(err)
	}
	for what, id := range map[string]string{"B's healthy worker": bHealthy.ID, "B's orphan": bOrphan.ID} {
		if st := b.instanceState(t, id); st != ec2types.InstanceStateNameRunning {
			t.Errorf("after A's reaper, %s %s is %s; A must not touch B's workers", what, id, st)
		}
	}

	rb, err := awslambda.NewReaper(ctx, b.config(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	if err := rb.Handle(lambdaContext(t), ev); err != nil {
		t.Fatal(err)
	}
	if st := b.instanceState(t, bOrphan.ID); st == ec2types.InstanceStateNameRunning {
		t.Errorf("B's reaper left B's orphan %s running", bOrphan.ID)
	}
	if st := a.instanceState(t, aJob.WorkerID); st != ec2types.InstanceStateNameRunning {
		t.Errorf("after B's reaper, A's worker is %s", st)
	}
}

// A function without SEREN_DEPLOYMENT refuses to start: it would see
// every deployment's workers as its own.
func TestFunctionsNeedADeployment(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, func(env map[string]string) { env[backends.EnvDeployment] = "" })
	_, err := awslambda.NewReaper(context.Background(), cfg)
	if err == nil || !strings.Contains(hint.Of(err), backends.EnvDeployment) {
		t.Fatalf("NewReaper without a deployment: %v (hint %q)", err, hint.Of(err))
	}
}
