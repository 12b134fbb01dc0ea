package awslambda_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/cwlog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/dynamostore"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher/ec2launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqsqueue"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry/cwtelemetry"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

// stack is one deployment's resources in the emulators, named for the
// test: the jobs table, the provisioning queue and its DLQ, the API key
// parameter, the worker log group, a metrics namespace, and what a worker
// launch needs in moto (AMI, subnet, security group, instance profile).
// Workers are tagged with the test's own SerenDeployment, so tests
// sharing moto do not count each other's instances.
type stack struct {
	cfg                                 aws.Config
	table, queueURL, dlqURL             string
	kmsKey, keyParam, apiKey            string
	logGroup, namespace, deployment     string
	ami, subnet, securityGroup, profile string
	maxConcurrent                       int

	ddb  *dynamodb.Client
	sqs  *sqs.Client
	ec2  *ec2.Client
	cw   *cloudwatch.Client
	logs *cloudwatchlogs.Client
}

func newStack(t *testing.T) *stack {
	t.Helper()
	cfg := awstest.Config(t, awstest.DynamoDB, awstest.SQS, awstest.KMS, awstest.SSM, awstest.EC2,
		awstest.CloudWatch, awstest.CloudWatchLogs)
	ctx := context.Background()
	cw, err := cwtelemetry.NewClient(cfg, os.Getenv(awstest.CloudWatchProtocolVar))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{
		cfg: cfg, kmsKey: awstest.KMSKeyID(t), maxConcurrent: 10,
		table:      awstest.Name(t, "jobs"),
		keyParam:   "/" + awstest.Name(t, "seren") + "/api-key",
		apiKey:     "sk_test_" + randHex(t, 24),
		logGroup:   "/aws/ec2/" + awstest.Name(t, "worker"),
		namespace:  "SerenTest/" + awstest.Name(t, "ns"),
		deployment: awstest.Name(t, "dep"),
		ddb:        dynamodb.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg), ec2: ec2.NewFromConfig(cfg),
		cw: cw, logs: cloudwatchlogs.NewFromConfig(cfg),
	}
	if err := dynamostore.CreateTable(ctx, s.ddb, s.table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = s.ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &s.table})
	})
	if s.queueURL, s.dlqURL, err = sqsqueue.CreateQueueWithDLQ(ctx, s.sqs, awstest.Name(t, "prov"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ssm.NewFromConfig(cfg).PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(s.keyParam), Value: aws.String(s.apiKey), Type: ssmtypes.ParameterTypeSecureString,
	}); err != nil {
		t.Fatal(err)
	}
	if err := cwlog.CreateGroup(ctx, s.logs, s.logGroup); err != nil {
		t.Fatal(err)
	}

	imgs, err := s.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("name"), Values: []string{"amzn2-ami-hvm-*"}}}})
	if err != nil || len(imgs.Images) == 0 {
		t.Fatalf("DescribeImages: %v", err)
	}
	s.ami = aws.ToString(imgs.Images[0].ImageId)
	subnets, err := s.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) == 0 {
		t.Fatalf("DescribeSubnets: %v", err)
	}
	s.subnet = aws.ToString(subnets.Subnets[0].SubnetId)
	sg, err := s.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: aws.String(awstest.Name(t, "sg")), Description: aws.String("worker egress"), VpcId: subnets.Subnets[0].VpcId,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.securityGroup = aws.ToString(sg.GroupId)
	s.profile = awstest.Name(t, "profile")
	createInstanceProfile(t, cfg, s.profile)
	t.Cleanup(func() { s.terminateAll(t) })
	return s
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// createInstanceProfile creates an IAM instance profile in moto (which
// checks that RunInstances names an existing one) with one signed IAM
// query call: the project has no IAM client, Terraform owns IAM.
func createInstanceProfile(t *testing.T, cfg aws.Config, name string) {
	t.Helper()
	ctx := context.Background()
	body := url.Values{"Action": {"CreateInstanceProfile"}, "Version": {"2010-05-08"}, "InstanceProfileName": {name}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, os.Getenv(awstest.EC2)+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "iam", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("CreateInstanceProfile: %s: %s", resp.Status, b)
	}
}

// env is what deploy/aws/terraform's main.tf hands the functions
// (coordinator_env ∪ provisioner_env ∪ reaper_env), for this stack, plus
// SEREN_DEPLOYMENT for test isolation.
func (s *stack) env() map[string]string {
	return map[string]string{
		backends.EnvBackend:                  "aws",
		backends.EnvJobsTable:                s.table,
		backends.EnvQueueURL:                 s.queueURL,
		backends.EnvMetricsNamespace:         s.namespace,
		backends.EnvLogGroup:                 s.logGroup,
		backends.EnvKMSKeyID:                 s.kmsKey,
		backends.EnvAPIKeyParam:              s.keyParam,
		awslambda.EnvMaxConcurrentJobs:       strconv.Itoa(s.maxConcurrent),
		backends.EnvWorkerAMI:                s.ami,
		backends.EnvWorkerSecurityGroupID:    s.securityGroup,
		backends.EnvWorkerInstanceProfile:    s.profile,
		backends.EnvWorkerSpot:               "false",
		backends.EnvWorkerSubnetID:           s.subnet,
		backends.EnvDeployment:               s.deployment,
		"AWS_LAMBDA_FUNCTION_TIMEOUT":        "20",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE":    "256",
		"SEREN_TEST_IGNORED_BY_THE_FUNCTION": "1",
	}
}

// workerEnv is Terraform's worker_env (what the AMI bakes into
// /etc/seren-worker.env) for this stack.
func (s *stack) workerEnv() map[string]string {
	return map[string]string{
		backends.EnvBackend:          "aws",
		"AWS_REGION":                 s.cfg.Region,
		backends.EnvJobsTable:        s.table,
		backends.EnvKMSKeyID:         s.kmsKey,
		backends.EnvLogGroup:         s.logGroup,
		backends.EnvMetricsNamespace: s.namespace,
	}
}

// config sets the stack's environment (t.Setenv) and reads it as the
// functions do.
func (s *stack) config(t *testing.T, tweak func(env map[string]string)) awslambda.Config {
	t.Helper()
	env := s.env()
	if tweak != nil {
		tweak(env)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	c, err := awslambda.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	return c
}

// store reads and writes the stack's jobs directly; now shifts its clock.
func (s *stack) store(t *testing.T, now func() time.Time) *jobstore.Store {
	t.Helper()
	d, err := dynamostore.New(s.ddb, s.table, dynamostore.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return jobstore.New(d, now)
}

func (s *stack) job(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := s.store(t, nil).Get(context.Background(), id)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return j
}

// launcher is an EC2 launcher of this stack's workers (for tests that
// need a live worker without a provisioner).
func (s *stack) launcher(t *testing.T) *ec2launcher.Launcher {
	t.Helper()
	l, err := ec2launcher.NewFromConfig(s.cfg, ec2launcher.Options{
		AMI: s.ami, InstanceProfile: s.profile, SubnetID: s.subnet, SecurityGroupIDs: []string{s.securityGroup},
		Deployment: s.deployment,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (s *stack) terminateAll(t *testing.T) {
	l, err := ec2launcher.NewFromConfig(s.cfg, ec2launcher.Options{AMI: s.ami, Deployment: s.deployment})
	if err != nil {
		return
	}
	ws, _ := l.List(context.Background())
	for _, w := range ws {
		_ = l.Stop(context.Background(), w.ID)
	}
}

func (s *stack) live(t *testing.T) []launcher.Worker {
	t.Helper()
	ws, err := s.launcher(t).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func (s *stack) instance(t *testing.T, id string) ec2types.Instance {
	t.Helper()
	out, err := s.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		t.Fatalf("DescribeInstances %s: %v", id, err)
	}
	return out.Reservations[0].Instances[0]
}

func (s *stack) instanceState(t *testing.T, id string) ec2types.InstanceStateName {
	t.Helper()
	inst := s.instance(t, id)
	if inst.State == nil {
		return ""
	}
	return inst.State.Name
}

// receive takes up to 10 messages from queueURL as the Lambda event
// source mapping does (with ApproximateReceiveCount), waiting up to wait.
func (s *stack) receive(t *testing.T, queueURL string, wait time.Duration) []sqstypes.Message {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		out, err := s.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, VisibilityTimeout: 120, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) > 0 || time.Now().After(deadline) {
			return out.Messages
		}
	}
}

// sqsEvent is the event the SQS event source mapping builds from received
// messages: the fixture's shape, filled with the real messages.
func (s *stack) sqsEvent(t *testing.T, msgs []sqstypes.Message) events.SQSEvent {
	t.Helper()
	return s.sqsEventFrom(t, msgs, s.queueURL)
}

// sqsEventFrom is sqsEvent for messages of queueURL (e.g. the DLQ's).
func (s *stack) sqsEventFrom(t *testing.T, msgs []sqstypes.Message, queueURL string) events.SQSEvent {
	t.Helper()
	var tmpl events.SQSEvent
	loadEvent(t, "sqs-event.json", &tmpl)
	ev := events.SQSEvent{}
	for _, m := range msgs {
		r := tmpl.Records[0]
		r.MessageId, r.ReceiptHandle, r.Body = aws.ToString(m.MessageId), aws.ToString(m.ReceiptHandle), aws.ToString(m.Body)
		r.Md5OfBody = aws.ToString(m.MD5OfBody)
		r.Attributes = map[string]string{}
		for k, v := range m.Attributes {
			r.Attributes[k] = v
		}
		r.EventSourceARN = "arn:aws:sqs:us-east-1:000000000000:" + queueURL[strings.LastIndex(queueURL, "/")+1:]
		ev.Records = append(ev.Records, r)
	}
	return ev
}

// queued counts the messages of queueURL (visible + in flight + delayed).
func (s *stack) queued(t *testing.T, queueURL string) (visible, inFlight, delayed int) {
	t.Helper()
	out, err := s.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := func(k sqstypes.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(k)])
		return v
	}
	return n(sqstypes.QueueAttributeNameApproximateNumberOfMessages),
		n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)
}

// apiEvent builds an API Gateway HTTP API event from the fixtures.
func (s *stack) apiEvent(t *testing.T, method, target string, body []byte, key string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	var ev events.APIGatewayV2HTTPRequest
	if body != nil {
		loadEvent(t, "apigw-v2-post-base64.json", &ev)
		ev.Body = base64.StdEncoding.EncodeToString(body)
		delete(ev.Headers, "idempotency-key")
	} else {
		loadEvent(t, "apigw-v2-get.json", &ev)
		ev.Cookies = nil
		delete(ev.Headers, "x-multi")
	}
	path, query, _ := strings.Cut(target, "?")
	ev.RawPath, ev.RawQueryString = path, query
	ev.RequestContext.HTTP.Method, ev.RequestContext.HTTP.Path = method, path
	ev.RouteKey, ev.RequestContext.RouteKey = "ANY /{proxy+}", "ANY /{proxy+}"
	ev.PathParameters = map[string]string{"proxy": strings.TrimPrefix(path, "/")}
	ev.QueryStringParameters = nil
	if q, err := url.ParseQuery(query); err == nil && len(q) > 0 {
		ev.QueryStringParameters = map[string]string{}
		for k, v := range q {
			ev.QueryStringParameters[k] = strings.Join(v, ",")
		}
	}
	if key == "" {
		delete(ev.Headers, "x-api-key")
	} else {
		ev.Headers["x-api-key"] = key
	}
	return ev
}

// submitBody is a POST /jobs body.
func submitBody(t *testing.T, source, target string, filter jobs.Filter, opts jobs.Options) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"schema_version": "1.0", "command": "init", "source_url": source, "target_url": target,
		"filter": filter, "options": opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawItems scans the jobs table and renders every attribute of every item
// as text (binary attributes as their raw bytes), for sentinel checks.
func (s *stack) rawItems(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	p := dynamodb.NewScanPaginator(s.ddb, &dynamodb.ScanInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Items {
			writeAttrs(&sb, item)
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

func writeAttrs(sb *strings.Builder, item map[string]ddbtypes.AttributeValue) {
	keys := make([]string, 0, len(item))
	for k := range item {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sb.WriteString(k + "=")
		writeAttr(sb, item[k])
		sb.WriteString(" ")
	}
}

func writeAttr(sb *strings.Builder, v ddbtypes.AttributeValue) {
	switch v := v.(type) {
	case *ddbtypes.AttributeValueMemberS:
		sb.WriteString(v.Value)
	case *ddbtypes.AttributeValueMemberN:
		sb.WriteString(v.Value)
	case *ddbtypes.AttributeValueMemberB:
		sb.Write(v.Value)
		sb.WriteString(" " + base64.StdEncoding.EncodeToString(v.Value))
	case *ddbtypes.AttributeValueMemberSS:
		sb.WriteString(strings.Join(v.Value, ","))
	case *ddbtypes.AttributeValueMemberL:
		for _, e := range v.Value {
			writeAttr(sb, e)
			sb.WriteString(",")
		}
	case *ddbtypes.AttributeValueMemberM:
		writeAttrs(sb, v.Value)
	default:
		fmt.Fprintf(sb, "%v", v)
	}
}

// logEvents returns every event message of the worker log group.
func (s *stack) logEvents(t *testing.T) []string {
	t.Helper()
	var out []string
	p := cloudwatchlogs.NewFilterLogEventsPaginator(s.logs, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String(s.logGroup)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			out = append(out, aws.ToString(e.LogStreamName)+" "+aws.ToString(e.Message))
		}
	}
	return out
}

// metricSum is the Sum of a metric of the stack's namespace over the last
// hour, across all its dimension combinations.
func (s *stack) metricSum(t *testing.T, name string) (float64, []cwtypes.Metric) {
	t.Helper()
	ctx := context.Background()
	list, err := s.cw.ListMetrics(ctx, &cloudwatch.ListMetricsInput{Namespace: aws.String(s.namespace), MetricName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	// moto lists a metric once per data point; CloudWatch once per
	// dimension combination.
	var metrics []cwtypes.Metric
	seenDims := map[string]bool{}
	for _, m := range list.Metrics {
		k := fmt.Sprint(dims(m))
		if !seenDims[k] {
			seenDims[k] = true
			metrics = append(metrics, m)
		}
	}
	var sum float64
	for _, m := range metrics {
		st, err := s.cw.GetMetricStatistics(ctx, &cloudwatch.GetMetricStatisticsInput{
			Namespace: aws.String(s.namespace), MetricName: aws.String(name), Dimensions: m.Dimensions,
			StartTime: aws.Time(time.Now().Add(-time.Hour)), EndTime: aws.Time(time.Now().Add(time.Hour)),
			Period: aws.Int32(3600), Statistics: []cwtypes.Statistic{cwtypes.StatisticSum},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Datapoints {
			sum += aws.ToFloat64(p.Sum)
		}
	}
	return sum, metrics
}

func dims(m cwtypes.Metric) map[string]string {
	out := map[string]string{}
	for _, d := range m.Dimensions {
		out[aws.ToString(d.Name)] = aws.ToString(d.Value)
	}
	return out
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

// noSecret fails if any of texts holds any of secrets.
func noSecret(t *testing.T, where string, texts []string, secrets ...string) {
	t.Helper()
	for _, txt := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(txt, s) {
				t.Errorf("%s holds a credential: …%s…", where, excerpt(txt, s))
			}
		}
	}
}

func excerpt(txt, s string) string {
	i := strings.Index(txt, s)
	lo, hi := max(0, i-60), min(len(txt), i+len(s)+20)
	return strings.ReplaceAll(txt[lo:hi], s, "<SENTINEL>")
}
