package awslambda_test

import (
	"bufio"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// call invokes the API function with an HTTP API event and returns the
// response and its (decoded) body.
func call(t *testing.T, fn *function, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, []byte) {
	t.Helper()
	var resp events.APIGatewayV2HTTPResponse
	if _, herr := fn.invoke(t, ev, &resp); herr != "" {
		t.Fatalf("%s %s: handler error %s", ev.RequestContext.HTTP.Method, ev.RawPath, herr)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	return resp, body
}

// TestAPIFunctionThroughRIE runs the real lambda-api bootstrap under the
// Lambda runtime emulator and sends it the HTTP API events API Gateway
// would: health, authentication, submit (credentials sealed with KMS,
// stored in DynamoDB, job id queued in SQS), status, list, logs, cancel.
func TestAPIFunctionThroughRIE(t *testing.T) {
	s := newStack(t)
	fn := startFunction(t, "./cmd/lambda-api", s.env())
	const sentinel = "s3ntinel-Coordinator-Pa55"

	resp, body := call(t, fn, s.apiEvent(t, http.MethodGet, "/health", nil, ""))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, fn, s.apiEvent(t, http.MethodGet, "/jobs", nil, ""))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, fn, s.apiEvent(t, http.MethodGet, "/jobs", nil, "sk_wrong_"+strings.Repeat("0", 32)))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d %s", resp.StatusCode, body)
	}

	submit := submitBody(t, "postgresql://app:"+sentinel+"@db.example.com:5432/app",
		"postgresql://app:"+sentinel+"-target@target.example.com:5432/app",
		jobs.Filter{IncludeDatabases: []string{"app"}}, jobs.Options{NoSync: true, EstimatedSizeBytes: 5 << 30})
	resp, body = call(t, fn, s.apiEvent(t, http.MethodPost, "/jobs", submit, s.apiKey))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s", resp.StatusCode, body)
	}
	var created api.SubmitResponse
	mustJSON(t, body, &created)
	if created.JobID == "" || created.TraceID == "" || created.Status != jobs.StatusProvisioning {
		t.Fatalf("submit answer %s", body)
	}
	responses := []string{string(body)}

	// The job is stored with its credentials sealed.
	if j := s.job(t, created.JobID); len(j.Credentials) == 0 {
		t.Fatalf("submitted job stored without sealed credentials")
	}
	// The queue holds the job id and nothing else.
	msgs := s.receive(t, s.queueURL, 5e9)
	if len(msgs) != 1 || aws.ToString(msgs[0].Body) != created.JobID {
		t.Fatalf("queued messages %v; want the job id %s", msgs, created.JobID)
	}

	resp, body = call(t, fn, s.apiEvent(t, http.MethodGet, "/jobs/"+created.JobID, nil, s.apiKey))
	responses = append(responses, string(body))
	var view api.JobView
	mustJSON(t, body, &view)
	if resp.StatusCode != http.StatusOK || view.Status != jobs.StatusProvisioning || view.TraceID != created.TraceID ||
		!strings.Contains(view.LogURL, "console.aws.amazon.com/cloudwatch") {
		t.Fatalf("status: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, fn, s.apiEvent(t, http.MethodGet, "/jobs?status=provisioning", nil, s.apiKey))
	responses = append(responses, string(body))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), created.JobID) {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, fn, s.apiEvent(t, http.MethodGet, "/jobs/"+created.JobID+"/logs", nil, s.apiKey))
	if resp.StatusCode != http.StatusOK || resp.Headers["Content-Type"] != api.LogContentType {
		t.Fatalf("logs: %d %v %s", resp.StatusCode, resp.Headers, body)
	}
	resp, body = call(t, fn, s.apiEvent(t, http.MethodGet, "/jobs/no-such-job", nil, s.apiKey))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown job: %d %s", resp.StatusCode, body)
	}

	resp, body = call(t, fn, s.apiEvent(t, http.MethodPost, "/jobs/"+created.JobID+"/cancel", []byte{}, s.apiKey))
	responses = append(responses, string(body))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"cancelled"`) {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, fn, s.apiEvent(t, http.MethodPost, "/jobs/"+created.JobID+"/cancel", []byte{}, s.apiKey))
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("second cancel: %d %s", resp.StatusCode, body)
	}
	// An ended job keeps no credentials, not even sealed ones.
	if j := s.job(t, created.JobID); j.Status != jobs.StatusCancelled || len(j.Credentials) != 0 {
		t.Fatalf("stored job: %s, %d bytes of sealed credentials left", j.Status, len(j.Credentials))
	}

	// Cancelling a running job terminates its worker instance before the
	// invocation returns (nothing runs in a frozen Lambda container).
	running, w := s.runningJob(t, time.Now(), nil)
	resp, body = call(t, fn, s.apiEvent(t, http.MethodPost, "/jobs/"+running.ID+"/cancel", []byte{}, s.apiKey))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"cancelled"`) {
		t.Fatalf("cancel running: %d %s", resp.StatusCode, body)
	}
	if st := s.instanceState(t, w.ID); st != ec2types.InstanceStateNameTerminated && st != ec2types.InstanceStateNameShuttingDown {
		t.Errorf("cancelled job's worker %s is %s; want it terminated", w.ID, st)
	}

	// The submission was counted before the invocation returned.
	if sum, _ := s.metricSum(t, "JobSubmitted"); sum != 1 {
		t.Errorf("JobSubmitted sum %v, want 1", sum)
	}

	// No credential in DynamoDB, SQS, the API's answers or the function's
	// own log output.
	noSecret(t, "a DynamoDB item", []string{s.rawItems(t)}, sentinel)
	noSecret(t, "an SQS message", []string{aws.ToString(msgs[0].Body)}, sentinel)
	noSecret(t, "an API response", responses, sentinel)
	noSecret(t, "the function's log", []string{fn.out.String()}, sentinel)
	// The function logged its requests (JSON, to stdout, as Lambda ships it).
	found := false
	sc := bufio.NewScanner(strings.NewReader(fn.out.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), created.JobID) && strings.HasPrefix(sc.Text(), "{") {
			found = true
		}
	}
	if !found {
		t.Errorf("the function's log never mentions job %s:\n%s", created.JobID, fn.out.String())
	}
}
