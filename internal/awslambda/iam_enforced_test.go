package awslambda_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"

	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestIAMEnforcedJobFlow runs each component through the job flow against
// a moto server with IAM enforcement on (INITIAL_NO_AUTH_ACTION_COUNT;
// scripts/emulators.sh starts it as SEREN_TEST_MOTO_IAM_ENDPOINT), each
// with the access key of an IAM user whose only policy is its role's
// deploy/aws/terraform/policies/<role>.json.tpl, rendered with this
// stack's values: the API function submits two jobs (in-process, as its
// bootstrap runs it), the provisioner launches their workers, the real
// worker command copies job A's database between two PostgreSQL clusters
// and terminates its instance, the API function reads A's log and cancels
// B (terminating B's worker), and the reaper fails a silent job and
// terminates its worker. Every SSM, EC2, CloudWatch and CloudWatch Logs
// call the components make must be allowed (the steps check the effects:
// metrics, log lines, instance states), and per component one call
// outside its policy must be refused with AccessDenied (proof that
// enforcement is on for that key).
//
// What moto 5.2.1 enforces, and so what this test proves (read from
// moto/core/authorization.py and moto/iam/access_control.py, and checked
// against the server):
//   - Signatures: after the first INITIAL_NO_AUTH_ACTION_COUNT actions,
//     every request must be SigV4-signed by an existing IAM user's key.
//   - Actions: the action ("<signing name>:<Operation>") must be allowed
//     by one of the user's policies. This is what the test checks: each
//     component's code calls only actions its policy allows.
//   - NOT resources: moto evaluates every SSM, EC2, CloudWatch and Logs
//     request against the resource "*", so a statement scoped to an ARN
//     never matches and would refuse what real AWS allows. The test
//     therefore installs each statement with "Resource": "*".
//   - NOT conditions: moto evaluates conditions only for sts:AssumeRole
//     trust policies; on other actions it has no condition values and lets
//     every condition pass. The conditions stay in the installed policy but
//     prove nothing here.
//   - CloudWatch is signed as "monitoring", and moto builds the action from
//     the signing name, so the test installs cloudwatch:* actions as
//     monitoring:* (the same operations).
//
// Resource and condition scoping (deployment tags, the job_id encryption
// context, a worker terminating only itself) are checked statically by
// TestIAMPolicyConditions, and the tag scoping at work by the isolation
// tests. DynamoDB, SQS and KMS run on emulators without IAM (dynalite,
// fauxqs, local-kms): those calls are made with the same keys but not
// checked; TestIAMPoliciesAllowExactlyWhatTheCodeNeeds covers them.
// Implied actions (iam:PassRole, ec2:CreateTags on RunInstances) are not
// checked by moto either.
func TestIAMEnforcedJobFlow(t *testing.T) {
	awstest.Require(t, awstest.MotoIAM)
	iamEP := os.Getenv(awstest.MotoIAM)
	admin := motoIAMBootstrap(t, iamEP)

	// The stack's SSM, EC2, CloudWatch and Logs resources live in the
	// enforcing moto, created with the admin key.
	for _, v := range []string{awstest.SSM, awstest.EC2, awstest.CloudWatch, awstest.CloudWatchLogs} {
		t.Setenv(v, iamEP)
	}
	useKey(t, admin)
	s := newStack(t)

	root := repoRoot(t)
	vars := policyVars(t, root)
	const acct = "123456789012" // moto's default account
	for k, v := range map[string]string{
		"deployment":           s.deployment,
		"metrics_namespace":    s.namespace,
		"managed_by":           "seren-replication-system",
		"worker_ami_id":        s.ami,
		"region":               "us-east-1",
		"partition":            "aws",
		"ec2_arn_prefix":       "arn:aws:ec2:us-east-1:" + acct,
		"api_key_param_arn":    "arn:aws:ssm:us-east-1:" + acct + ":parameter" + s.keyParam,
		"api_keys_path_arn":    "arn:aws:ssm:us-east-1:" + acct + ":parameter" + s.keyParam + "s",
		"worker_log_group_arn": "arn:aws:logs:us-east-1:" + acct + ":log-group:" + s.logGroup,
		"worker_profile_arn":   "arn:aws:iam::" + acct + ":instance-profile/" + s.profile,
	} {
		vars[k] = v
	}
	keys := map[string]accessKey{}
	for _, role := range []string{"coordinator", "provisioner", "reaper", "worker"} {
		doc := renderPolicy(t, filepath.Join(root, "deploy/aws/terraform/policies", role+".json.tpl"), vars)
		keys[role] = motoIAMUser(t, iamEP, admin, awstest.Name(t, role), motoPolicy(t, doc))
	}
	ctx := context.Background()
	gone := map[ec2types.InstanceStateName]bool{ec2types.InstanceStateNameShuttingDown: true, ec2types.InstanceStateNameTerminated: true}

	// 1. The API function (coordinator key) takes two jobs: A copies a
	// database between two real PostgreSQL clusters, B is cancelled later.
	// It reads the API key from SSM (GetParameter, GetParametersByPath)
	// and sends JobSubmitted.
	src, dst := pgtest.Pair(t)
	dbName, _ := src.NewDB(t, dst)
	src.Exec(t, dbName, `CREATE TABLE orders (id int PRIMARY KEY, note text);
		INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 200) g;`)
	useKey(t, keys["coordinator"])
	apiFn := newSubmitter(t, s, s.config(t, nil))
	jobA := apiFn.submitBody(t, submitBody(t, src.URL("postgres").Secret(), dst.URL("postgres").Secret(),
		jobs.Filter{IncludeDatabases: []string{dbName}}, jobs.Options{NoSync: true, EstimatedSizeBytes: 1 << 20}))
	jobB := apiFn.submit(t, 1<<20)
	if sum, _ := s.metricSum(t, "JobSubmitted"); sum != 2 {
		t.Errorf("JobSubmitted sum %v, want 2: PutMetricData with the coordinator key", sum)
	}

	// 2. The provisioner (its key) launches both: DescribeInstances to
	// count, RunInstances, JobProvisioned metrics.
	useKey(t, keys["provisioner"])
	prov := newProvisioner(t, s.config(t, nil))
	msgs := s.receiveAll(t, s.queueURL, 2)
	batch, err := prov.Handle(lambdaContext(t), s.sqsEvent(t, msgs))
	if err != nil || len(batch.BatchItemFailures) != 0 {
		t.Fatalf("provisioner: %v, failures %v", err, batch.BatchItemFailures)
	}
	a, b := s.job(t, jobA), s.job(t, jobB)
	for _, j := range []*jobs.Job{a, b} {
		if j.Status != jobs.StatusProvisioning || !strings.HasPrefix(j.WorkerID, "i-") {
			t.Fatalf("job %s after the provisioner: %s worker %q error %q", j.ID, j.Status, j.WorkerID, j.Error)
		}
	}
	if sum, _ := s.metricSum(t, "JobProvisioned"); sum != 2 {
		t.Errorf("JobProvisioned sum %v, want 2: PutMetricData with the provisioner key", sum)
	}

	// 3. Job A's worker (worker key): the real worker command, as the
	// instance's unit runs it (moto's instance is a record, not a VM; the
	// instance id comes from the override instead of IMDS). It reads the
	// job, opens its credentials, copies the database, heartbeats, ships
	// its log (CreateLogStream, PutLogEvents, ...), sends its metrics and
	// terminates its own instance, all with the worker key.
	useKey(t, keys["worker"])
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(wctx, binary(t, "./cmd/postgres-seren-replicator"), "worker", "--job-id", jobA, "--heartbeat-every", "1s")
	cmd.Env = os.Environ()
	for k, v := range s.workerEnv() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, backends.EnvWorkerInstanceID+"="+a.WorkerID,
		backends.EnvWorkerNoShutdownFile+"="+filepath.Join(t.TempDir(), "no-shutdown"))
	var workerOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &workerOut, &workerOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("worker: %v\n%s", err, workerOut.String())
	}
	if j := s.job(t, jobA); j.Status != jobs.StatusCompleted {
		t.Fatalf("job A after the worker: %s %q\n%s", j.Status, j.Error, workerOut.String())
	}
	var rows int
	if err := dst.Conn(t, dbName).QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&rows); err != nil || rows != 200 {
		t.Errorf("target orders: %d rows (%v), want 200", rows, err)
	}
	if st := s.instanceState(t, a.WorkerID); !gone[st] {
		t.Errorf("job A's instance is %s after the worker; the worker key must terminate it", st)
	}
	if sum, _ := s.metricSum(t, "JobCompleted"); sum != 1 {
		t.Errorf("JobCompleted sum %v, want 1: PutMetricData with the worker key", sum)
	}
	var shipped int
	for _, e := range s.logEvents(t) {
		if strings.Contains(e, jobA) {
			shipped++
		}
	}
	if shipped < 3 {
		t.Errorf("%d of job A's log lines in CloudWatch Logs; the worker key must ship them\n%s", shipped, workerOut.String())
	}

	// 4. The API function reads job A's log (DescribeLogStreams,
	// FilterLogEvents) and cancels job B, stopping its worker
	// (DescribeInstances, TerminateInstances).
	useKey(t, keys["coordinator"])
	apiFn = newSubmitter(t, s, s.config(t, nil))
	resp, err := apiFn.fn.Handle(ctx, s.apiEvent(t, http.MethodGet, "/jobs/"+jobA+"/logs", nil, s.apiKey))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET logs: %v %d %s", err, resp.StatusCode, resp.Body)
	}
	var lines []joblog.Line
	sc := bufio.NewScanner(strings.NewReader(resp.Body))
	for sc.Scan() {
		var l joblog.Line
		mustJSON(t, sc.Bytes(), &l)
		lines = append(lines, l)
	}
	if len(lines) != shipped || !strings.Contains(lines[len(lines)-1].Text, "job completed") {
		t.Errorf("GET /jobs/%s/logs: %s", jobA, resp.Body)
	}
	resp, err = apiFn.fn.Handle(ctx, s.apiEvent(t, http.MethodPost, "/jobs/"+jobB+"/cancel", nil, s.apiKey))
	if err != nil || resp.StatusCode >= 300 {
		t.Fatalf("cancel: %v %d %s", err, resp.StatusCode, resp.Body)
	}
	if j := s.job(t, jobB); j.Status != jobs.StatusCancelled {
		t.Errorf("job B after cancel: %s %q", j.Status, j.Error)
	}
	if st := s.instanceState(t, b.WorkerID); !gone[st] {
		t.Errorf("job B's instance is %s after cancel; the coordinator key must terminate it", st)
	}

	// 5. The reaper (its key) fails a job whose worker went silent and
	// terminates the worker (DescribeInstances, TerminateInstances),
	// counting the job (JobFailed).
	useKey(t, admin)
	silent, silentW := s.runningJob(t, time.Now().Add(-10*time.Minute), nil)
	useKey(t, keys["reaper"])
	r, err := awslambda.NewReaper(ctx, s.config(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var sched events.EventBridgeEvent
	loadEvent(t, "scheduled-event.json", &sched)
	if err := r.Handle(lambdaContext(t), sched); err != nil {
		t.Fatal(err)
	}
	if j := s.job(t, silent.ID); j.Status != jobs.StatusFailed {
		t.Errorf("silent job after the reaper: %s %q", j.Status, j.Error)
	}
	if st := s.instanceState(t, silentW.ID); !gone[st] {
		t.Errorf("silent worker %s is %s; the reaper key must terminate it", silentW.ID, st)
	}
	if sum, _ := s.metricSum(t, "JobFailed"); sum != 1 {
		t.Errorf("JobFailed sum %v, want 1: PutMetricData with the reaper key", sum)
	}

	// 6. Outside each policy: refused.
	run := &ec2.RunInstancesInput{ImageId: aws.String(s.ami), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: ec2types.InstanceTypeT3Micro, SubnetId: aws.String(s.subnet)}
	refusals := []struct {
		role, op string
		call     func(cfg aws.Config) error
	}{
		{"coordinator", "ec2:RunInstances", func(cfg aws.Config) error {
			_, err := ec2.NewFromConfig(cfg).RunInstances(ctx, run)
			return err
		}},
		{"provisioner", "ssm:GetParametersByPath", func(cfg aws.Config) error {
			_, err := ssm.NewFromConfig(cfg).GetParametersByPath(ctx, &ssm.GetParametersByPathInput{Path: aws.String(s.keyParam + "s")})
			return err
		}},
		{"provisioner", "logs:FilterLogEvents", func(cfg aws.Config) error {
			_, err := cloudwatchlogs.NewFromConfig(cfg).FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(s.logGroup)})
			return err
		}},
		{"reaper", "ec2:RunInstances", func(cfg aws.Config) error {
			_, err := ec2.NewFromConfig(cfg).RunInstances(ctx, run)
			return err
		}},
		{"reaper", "ssm:GetParameter", func(cfg aws.Config) error {
			_, err := ssm.NewFromConfig(cfg).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(s.keyParam), WithDecryption: aws.Bool(true)})
			return err
		}},
		{"worker", "ec2:DescribeInstances", func(cfg aws.Config) error {
			_, err := ec2.NewFromConfig(cfg).DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
			return err
		}},
		{"worker", "ec2:RunInstances", func(cfg aws.Config) error {
			_, err := ec2.NewFromConfig(cfg).RunInstances(ctx, run)
			return err
		}},
	}
	for _, rf := range refusals {
		rec := &lastResponse{}
		cfg := keyConfig(t, keys[rf.role])
		cfg.HTTPClient = &http.Client{Transport: rec}
		err := rf.call(cfg)
		if !rec.accessDenied(err) {
			t.Errorf("%s key calling %s: %v (response %d %s); want AccessDenied (outside its policy)", rf.role, rf.op, err, rec.status, rec.body)
		}
	}
}

type accessKey struct{ id, secret string }

// useKey makes key the process's AWS credentials (what LoadDefaultConfig,
// and so every component, reads).
func useKey(t *testing.T, k accessKey) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", k.id)
	t.Setenv("AWS_SECRET_ACCESS_KEY", k.secret)
}

func keyConfig(t *testing.T, k accessKey) aws.Config {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(k.id, k.secret, "")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lastResponse records the last response's status and body: moto answers
// a refusal with an XML error body even to the JSON protocols (SSM, Logs),
// which the SDK then reports as a deserialization error.
type lastResponse struct {
	status int
	body   []byte
}

func (l *lastResponse) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	l.body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	l.status = resp.StatusCode
	resp.Body = io.NopCloser(bytes.NewReader(l.body))
	return resp, nil
}

// accessDenied: the call failed with moto's refusal of an action the
// key's policies do not allow (403, code AccessDenied, "is not authorized
// to perform").
func (l *lastResponse) accessDenied(err error) bool {
	if err == nil || l.status != http.StatusForbidden {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied" {
		return true
	}
	return bytes.Contains(l.body, []byte("<Code>AccessDenied</Code>")) && bytes.Contains(l.body, []byte("is not authorized to perform"))
}

// motoIAMBootstrap spends the enforcing moto's unsigned actions on an
// admin user (allowed everything: it only sets up the stack) and returns
// its key. It first resets moto's count of unsigned actions (POST
// /moto-api/reset-auth), so the test can run again on the same server; the
// previous count must be finite, i.e. the server enforces IAM.
func motoIAMBootstrap(t *testing.T, ep string) accessKey {
	t.Helper()
	n := os.Getenv(awstest.MotoIAMNoAuthVar)
	if n != "3" {
		t.Fatalf("%s=%q; this test spends exactly 3 unsigned actions (scripts/emulators.sh sets 3)", awstest.MotoIAMNoAuthVar, n)
	}
	resp, err := http.Post(ep+"/moto-api/reset-auth", "text/plain", strings.NewReader(n))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var reset struct {
		Previous string `json:"PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"`
	}
	if err := json.Unmarshal(body, &reset); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reset-auth: %d %s", resp.StatusCode, body)
	}
	if reset.Previous == "inf" || reset.Previous == "" {
		t.Fatalf("the moto at %s was started without INITIAL_NO_AUTH_ACTION_COUNT (IAM not enforced): %s", ep, body)
	}
	root := accessKey{"test", "test"}
	name := awstest.Name(t, "admin")
	iamCall(t, ep, root, url.Values{"Action": {"CreateUser"}, "UserName": {name}})
	iamCall(t, ep, root, url.Values{"Action": {"PutUserPolicy"}, "UserName": {name}, "PolicyName": {"admin"},
		"PolicyDocument": {`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`}})
	k := createAccessKey(t, ep, root, name)
	// The unsigned actions are spent: the root key is refused from now on.
	_, err = ec2.NewFromConfig(keyConfig(t, root), func(o *ec2.Options) { o.BaseEndpoint = aws.String(ep) }).
		DescribeVpcs(context.Background(), &ec2.DescribeVpcsInput{})
	if err == nil {
		t.Fatal("the enforcing moto answered an unsigned (root) request after its INITIAL_NO_AUTH_ACTION_COUNT")
	}
	return k
}

// motoIAMUser creates an IAM user whose only policy is doc and returns
// its access key.
func motoIAMUser(t *testing.T, ep string, admin accessKey, name, doc string) accessKey {
	t.Helper()
	iamCall(t, ep, admin, url.Values{"Action": {"CreateUser"}, "UserName": {name}})
	iamCall(t, ep, admin, url.Values{"Action": {"PutUserPolicy"}, "UserName": {name}, "PolicyName": {"role"}, "PolicyDocument": {doc}})
	return createAccessKey(t, ep, admin, name)
}

func createAccessKey(t *testing.T, ep string, k accessKey, user string) accessKey {
	t.Helper()
	out := iamCall(t, ep, k, url.Values{"Action": {"CreateAccessKey"}, "UserName": {user}})
	var r struct {
		ID     string `xml:"CreateAccessKeyResult>AccessKey>AccessKeyId"`
		Secret string `xml:"CreateAccessKeyResult>AccessKey>SecretAccessKey"`
	}
	if err := xml.Unmarshal(out, &r); err != nil || r.ID == "" || r.Secret == "" {
		t.Fatalf("CreateAccessKey %s: %v %s", user, err, out)
	}
	return accessKey{r.ID, r.Secret}
}

// iamCall is one signed IAM query call (the project has no IAM client).
func iamCall(t *testing.T, ep string, k accessKey, params url.Values) []byte {
	t.Helper()
	ctx := context.Background()
	params.Set("Version", "2010-05-08")
	body := params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: k.id, SecretAccessKey: k.secret}, req,
		hex.EncodeToString(sum[:]), "iam", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IAM %s: %s: %s", params.Get("Action"), resp.Status, out)
	}
	return out
}

// motoPolicy is a rendered policy as moto can evaluate it (see
// TestIAMEnforcedJobFlow): the same statements and actions, each Resource
// "*", cloudwatch: actions under moto's prefix monitoring:.
func motoPolicy(t *testing.T, doc map[string]any) string {
	t.Helper()
	for _, s := range doc["Statement"].([]any) {
		st := s.(map[string]any)
		st["Resource"] = "*"
		list := st["Action"].([]any)
		for i, a := range list {
			list[i] = strings.Replace(a.(string), "cloudwatch:", "monitoring:", 1)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
