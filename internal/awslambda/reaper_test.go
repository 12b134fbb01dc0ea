package awslambda_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys/ssmkeys"
	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
)

// runningJob stores a job of the stack's API key whose worker instance
// was launched and started it at `at` (its last heartbeat); done, when
// set, ends it then.
func (s *stack) runningJob(t *testing.T, at time.Time, done *jobs.Transition) (*jobs.Job, launcher.Worker) {
	t.Helper()
	ctx := context.Background()
	st := s.store(t, func() time.Time { return at })
	j, err := st.Create(ctx, &jobs.Job{Owner: ssmkeys.OwnerID(s.apiKey), Spec: jobs.Spec{Command: jobs.CommandInit}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.launcher(t).Launch(ctx, launcher.Request{JobID: j.ID, TraceID: j.TraceID})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []jobs.Transition{jobs.Provisioned(w.ID, w.InstanceType, ""), jobs.Started(w.ID)} {
		if j, err = st.Apply(ctx, j.ID, tr); err != nil {
			t.Fatal(err)
		}
	}
	if done != nil {
		if j, err = st.Apply(ctx, j.ID, *done); err != nil {
			t.Fatal(err)
		}
	}
	return j, w
}

// TestReaper runs the scheduled function on a deployment with a healthy
// worker, a worker that stopped heartbeating ten minutes ago, and an
// instance that outlived its job: it fails the silent job and terminates
// both instances, and leaves the healthy one alone.
func TestReaper(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, nil)
	ago := time.Now().Add(-10 * time.Minute)
	healthy, healthyW := s.runningJob(t, time.Now(), nil)
	silent, silentW := s.runningJob(t, ago, nil)
	completed := jobs.Completed(nil)
	_, orphanW := s.runningJob(t, ago, &completed)

	r, err := awslambda.NewReaper(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ev events.EventBridgeEvent
	loadEvent(t, "scheduled-event.json", &ev)
	if err := r.Handle(lambdaContext(t), ev); err != nil {
		t.Fatal(err)
	}

	if j := s.job(t, silent.ID); j.Status != jobs.StatusFailed || !strings.Contains(j.Error, "stopped heartbeating") {
		t.Errorf("silent job: %s %q; want failed for its lost heartbeat", j.Status, j.Error)
	}
	gone := map[ec2types.InstanceStateName]bool{ec2types.InstanceStateNameShuttingDown: true, ec2types.InstanceStateNameTerminated: true}
	for what, id := range map[string]string{"silent worker": silentW.ID, "orphaned worker": orphanW.ID} {
		if st := s.instanceState(t, id); !gone[st] {
			t.Errorf("%s %s is %s; want it terminated", what, id, st)
		}
	}
	// The job the reaper ended is counted as finished (once).
	if sum, ms := s.metricSum(t, "JobFailed"); sum != 1 {
		t.Errorf("JobFailed sum %v (%v), want 1: the reaped job must be counted", sum, ms)
	}
	if j := s.job(t, healthy.ID); j.Status != jobs.StatusRunning {
		t.Errorf("healthy job: %s %q", j.Status, j.Error)
	}
	if st := s.instanceState(t, healthyW.ID); st != ec2types.InstanceStateNameRunning {
		t.Errorf("healthy worker is %s", st)
	}
}
