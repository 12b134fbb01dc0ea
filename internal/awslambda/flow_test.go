package awslambda_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/cwlog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestFullJobFlow is one job end to end on the emulators, through the
// real bootstraps: POST /jobs to the API function (under the Lambda
// runtime emulator) → the job id in SQS → the provisioner function with
// the SQS event → an EC2 instance in moto → the worker, run here as a
// local process with the AWS backend as the instance would run it (moto's
// instance is a record, not a VM), copying a database between two real
// PostgreSQL clusters with `init --no-sync` → completed, metrics in
// CloudWatch, [TRACE:…] lines in CloudWatch Logs, the instance terminated
// by the worker itself. No credential (the clusters' passwords) appears in
// any DynamoDB item, SQS message, log event, API response or process
// output.
func TestFullJobFlow(t *testing.T) {
	s := newStack(t)
	src, dst := pgtest.Pair(t)
	name, _ := src.NewDB(t, dst)
	src.Exec(t, name, `CREATE TABLE orders (id int PRIMARY KEY, note text);
		INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 300) g;
		CREATE TABLE items (id bigserial PRIMARY KEY, qty numeric); INSERT INTO items (qty) SELECT g FROM generate_series(1, 120) g;`)
	sentinels := []string{src.Password, dst.Password}
	if src.Password == "" || dst.Password == "" {
		t.Fatal("the test clusters have no passwords to watch for")
	}

	env := s.env()
	apiFn := startFunction(t, "./cmd/lambda-api", env)
	provFn := startFunction(t, "./cmd/lambda-provisioner", env)
	reaperFn := startFunction(t, "./cmd/lambda-reaper", env)
	worker := binary(t, "./cmd/postgres-seren-replicator")
	var responses []string

	// 1. Submit through the API function.
	srcURL, dstURL := src.URL("postgres"), dst.URL("postgres")
	body := submitBody(t, srcURL.Secret(), dstURL.Secret(), jobs.Filter{IncludeDatabases: []string{name}},
		jobs.Options{NoSync: true, EstimatedSizeBytes: 1 << 20})
	resp, rb := call(t, apiFn, s.apiEvent(t, http.MethodPost, "/jobs", body, s.apiKey))
	responses = append(responses, string(rb))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s", resp.StatusCode, rb)
	}
	var created api.SubmitResponse
	mustJSON(t, rb, &created)
	id, trace := created.JobID, created.TraceID

	// 2. The queue → the provisioner function.
	msgs := s.receiveAll(t, s.queueURL, 1)
	var batch events.SQSEventResponse
	if _, herr := provFn.invoke(t, s.sqsEvent(t, msgs), &batch); herr != "" || len(batch.BatchItemFailures) != 0 {
		t.Fatalf("provisioner: error %q, failures %v", herr, batch.BatchItemFailures)
	}
	j := s.job(t, id)
	instanceID := j.WorkerID
	if !strings.HasPrefix(instanceID, "i-") || j.InstanceType != "t3.medium" {
		t.Fatalf("after provisioning: worker %q type %q status %s", j.WorkerID, j.InstanceType, j.Status)
	}
	ud, err := s.ec2.DescribeInstanceAttribute(context.Background(), &ec2.DescribeInstanceAttributeInput{
		InstanceId: aws.String(instanceID), Attribute: ec2types.InstanceAttributeNameUserData})
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := base64.StdEncoding.DecodeString(aws.ToString(ud.UserData.Value)); string(raw) != id {
		t.Fatalf("user data %q; want the job id only", raw)
	}

	// 3. The worker, as the instance's systemd unit runs it: the AMI's
	// environment, the job id from the user data; the instance id comes
	// from the override instead of IMDS.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, worker, "worker", "--job-id", id, "--heartbeat-every", "1s")
	cmd.Env = os.Environ()
	for k, v := range s.workerEnv() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, backends.EnvWorkerInstanceID+"="+instanceID,
		backends.EnvWorkerNoShutdownFile+"="+filepath.Join(t.TempDir(), "no-shutdown"))
	var workerOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &workerOut, &workerOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("worker: %v\n%s", err, workerOut.String())
	}

	// 4. Completed, with the data on the target.
	j = s.job(t, id)
	if j.Status != jobs.StatusCompleted || j.WorkerID != instanceID || j.StartedAt == nil || j.CompletedAt == nil {
		t.Fatalf("job after the worker: %s worker %q error %q\n%s", j.Status, j.WorkerID, j.Error, workerOut.String())
	}
	if j.Progress.DatabasesCompleted != 1 || j.Progress.TablesCompleted != 2 {
		t.Errorf("final progress %+v", j.Progress)
	}
	for table, want := range map[string]int{"orders": 300, "items": 120} {
		var n int
		if err := dst.Conn(t, name).QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != want {
			t.Errorf("target %s: %d rows (%v), want %d", table, n, err, want)
		}
	}

	// 5. The worker terminated its own instance.
	if st := s.instanceState(t, instanceID); st != ec2types.InstanceStateNameTerminated && st != ec2types.InstanceStateNameShuttingDown {
		t.Errorf("worker instance %s is %s; the worker must terminate it", instanceID, st)
	}

	// 6. Metrics of every stage in CloudWatch.
	for _, m := range []string{"JobSubmitted", "JobProvisioned", "JobCompleted"} {
		if sum, _ := s.metricSum(t, m); sum != 1 {
			t.Errorf("%s sum %v, want 1", m, sum)
		}
	}
	for _, m := range []string{"ProvisioningDuration", "JobDuration"} {
		if _, ms := s.metricSum(t, m); len(ms) == 0 {
			t.Errorf("no %s metric", m)
		}
	}
	// ProvisioningDuration comes from the worker (launch to running), with
	// the real instance type.
	if _, ms := s.metricSum(t, "ProvisioningDuration"); len(ms) == 0 || dims(ms[0])["InstanceType"] != "t3.medium" {
		t.Errorf("ProvisioningDuration dimensions %v; want InstanceType t3.medium", ms)
	}
	if _, ms := s.metricSum(t, "JobCompleted"); len(ms) == 0 || dims(ms[0])["Command"] != "init" || dims(ms[0])["Status"] != "completed" {
		t.Errorf("JobCompleted dimensions %v", ms)
	}

	// 7. The worker's log in CloudWatch Logs: its instance's stream, JSON
	// events tagged with the trace id.
	cwEvents := s.logEvents(t)
	tag := "[TRACE:" + trace + "]"
	var ours []string
	for _, e := range cwEvents {
		stream, msg, _ := strings.Cut(e, " ")
		var rec struct {
			JobID   string `json:"job_id"`
			TraceID string `json:"trace_id"`
			Msg     string `json:"msg"`
		}
		if json.Unmarshal([]byte(msg), &rec) != nil || rec.JobID != id {
			continue
		}
		if stream != cwlog.StreamName(id, instanceID) || rec.TraceID != trace || !strings.Contains(rec.Msg, tag) {
			t.Errorf("log event in stream %s: %s", stream, msg)
		}
		ours = append(ours, rec.Msg)
	}
	if len(ours) < 3 || !strings.Contains(strings.Join(ours, "\n"), "job completed") {
		t.Errorf("worker log lines in CloudWatch Logs:\n%s", strings.Join(ours, "\n"))
	}

	// 8. The API function reports it, with the log link and the lines.
	resp, rb = call(t, apiFn, s.apiEvent(t, http.MethodGet, "/jobs/"+id, nil, s.apiKey))
	responses = append(responses, string(rb))
	var view api.JobView
	mustJSON(t, rb, &view)
	if resp.StatusCode != http.StatusOK || view.Status != jobs.StatusCompleted || !strings.Contains(view.LogURL, instanceID) {
		t.Errorf("GET /jobs/%s: %d %s", id, resp.StatusCode, rb)
	}
	resp, rb = call(t, apiFn, s.apiEvent(t, http.MethodGet, "/jobs/"+id+"/logs?follow=true", nil, s.apiKey))
	responses = append(responses, string(rb))
	var lines []joblog.Line
	sc := bufio.NewScanner(bytes.NewReader(rb))
	for sc.Scan() {
		var l joblog.Line
		mustJSON(t, sc.Bytes(), &l)
		lines = append(lines, l)
	}
	if resp.StatusCode != http.StatusOK || len(lines) != len(ours) || !strings.Contains(lines[len(lines)-1].Text, tag) {
		t.Errorf("GET /jobs/%s/logs: %d, %d lines (CloudWatch has %d)\n%s", id, resp.StatusCode, len(lines), len(ours), rb)
	}

	// 9. The reaper finds nothing left to do.
	var sched events.EventBridgeEvent
	loadEvent(t, "scheduled-event.json", &sched)
	if _, herr := reaperFn.invoke(t, sched, nil); herr != "" {
		t.Errorf("reaper: %s", herr)
	}
	if j := s.job(t, id); j.Status != jobs.StatusCompleted {
		t.Errorf("after the reaper: %s", j.Status)
	}

	// 10. No credential anywhere.
	noSecret(t, "a DynamoDB item", []string{s.rawItems(t)}, sentinels...)
	noSecret(t, "an SQS message", []string{aws.ToString(msgs[0].Body)}, sentinels...)
	noSecret(t, "a CloudWatch log event", s.logEvents(t), sentinels...)
	noSecret(t, "an API response", responses, sentinels...)
	noSecret(t, "a function's output", []string{apiFn.out.String(), provFn.out.String(), reaperFn.out.String()}, sentinels...)
	noSecret(t, "the worker's output", []string{workerOut.String()}, sentinels...)
}

// TestWorkerFailureTerminatesItsInstance: a job that fails (its source
// refuses connections) ends failed with a credential-free reason, counted
// in JobFailed, and its worker still terminates its instance.
func TestWorkerFailureTerminatesItsInstance(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, nil)
	const sentinel = "s3ntinel-Worker-Pa55"
	closed := freePort(t)
	id := newSubmitter(t, s, cfg).submitBody(t, submitBody(t,
		"postgresql://app:"+sentinel+"@127.0.0.1:"+strconv.Itoa(closed)+"/app?connect_timeout=5",
		"postgresql://app:"+sentinel+"@127.0.0.1:"+strconv.Itoa(closed)+"/app?connect_timeout=5",
		jobs.Filter{}, jobs.Options{NoSync: true}))
	resp, err := newProvisioner(t, cfg).Handle(lambdaContext(t), s.sqsEvent(t, s.receiveAll(t, s.queueURL, 1)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("provisioner: %v, failures %v", err, resp.BatchItemFailures)
	}
	instanceID := s.job(t, id).WorkerID

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t, "./cmd/postgres-seren-replicator"), "worker", "--job-id", id)
	cmd.Env = os.Environ()
	for k, v := range s.workerEnv() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, backends.EnvWorkerInstanceID+"="+instanceID,
		backends.EnvWorkerNoShutdownFile+"="+filepath.Join(t.TempDir(), "no-shutdown"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("worker: %v; want exit status 1\n%s", err, out)
	}
	j := s.job(t, id)
	if j.Status != jobs.StatusFailed || j.Error == "" {
		t.Fatalf("job %s %q", j.Status, j.Error)
	}
	if st := s.instanceState(t, instanceID); st != ec2types.InstanceStateNameTerminated && st != ec2types.InstanceStateNameShuttingDown {
		t.Errorf("worker instance %s is %s after a failed job; want it terminated", instanceID, st)
	}
	if sum, _ := s.metricSum(t, "JobFailed"); sum != 1 {
		t.Errorf("JobFailed sum %v, want 1", sum)
	}
	noSecret(t, "the job's error", []string{j.Error}, sentinel)
	noSecret(t, "a DynamoDB item", []string{s.rawItems(t)}, sentinel)
	noSecret(t, "a CloudWatch log event", s.logEvents(t), sentinel)
	noSecret(t, "the worker's output", []string{string(out)}, sentinel)
}
