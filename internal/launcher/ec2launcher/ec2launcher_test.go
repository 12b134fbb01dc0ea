package ec2launcher_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher/ec2launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

// recorder is an http.RoundTripper that keeps the body of every
// RunInstances request the SDK really sends to the emulator.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	runs []url.Values
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") == "RunInstances" {
			r.mu.Lock()
			r.runs = append(r.runs, form)
			r.mu.Unlock()
		}
	}
	return r.next.RoundTrip(req)
}

func (r *recorder) RunRequests() []url.Values {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]url.Values(nil), r.runs...)
}

// faults makes RunInstances fail with AWS error codes before the request
// is sent: moto cannot run out of capacity, so capacity and throttling
// errors are injected; everything that does get sent goes to moto.
type faults struct {
	mu    sync.Mutex
	codes []string // consumed one per matching call; "" lets a call through
	spot  bool     // inject only into spot requests
	calls int
}

func (f *faults) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("injectFaults",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			run, ok := in.Parameters.(*ec2.RunInstancesInput)
			if !ok {
				return next.HandleInitialize(ctx, in)
			}
			f.mu.Lock()
			f.calls++
			var code string
			if len(f.codes) > 0 && (!f.spot || run.InstanceMarketOptions != nil) {
				code, f.codes = f.codes[0], f.codes[1:]
			}
			f.mu.Unlock()
			if code != "" {
				return middleware.InitializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{Code: code, Message: "injected by test"}
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

type bundle struct {
	ec2        *ec2.Client // plain client for reading back
	rec        *recorder
	faults     *faults
	opts       ec2launcher.Options
	sleeps     []time.Duration
	deployment string
}

func setup(t *testing.T, tweak func(*ec2launcher.Options)) (*ec2launcher.Launcher, *bundle) {
	t.Helper()
	cfg := awstest.Config(t, awstest.EC2)
	ctx := context.Background()
	b := &bundle{rec: &recorder{next: http.DefaultTransport}, faults: &faults{}, deployment: awstest.Name(t, "dep")}
	b.ec2 = ec2.NewFromConfig(cfg)

	imgs, err := b.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"},
		Filters: []types.Filter{{Name: aws.String("name"), Values: []string{"amzn2-ami-hvm-*"}}}})
	if err != nil || len(imgs.Images) == 0 {
		t.Fatalf("DescribeImages: %v (%d images)", err, len(imgs.Images))
	}
	subnets, err := b.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) == 0 {
		t.Fatalf("DescribeSubnets: %v", err)
	}
	subnet := subnets.Subnets[0]
	sg, err := b.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: aws.String(awstest.Name(t, "sg")), Description: aws.String("worker egress"), VpcId: subnet.VpcId,
	})
	if err != nil {
		t.Fatalf("CreateSecurityGroup: %v", err)
	}
	profile := awstest.Name(t, "profile")
	createInstanceProfile(t, cfg, profile)

	b.opts = ec2launcher.Options{
		AMI:              aws.ToString(imgs.Images[0].ImageId),
		InstanceProfile:  profile,
		SubnetID:         aws.ToString(subnet.SubnetId),
		SecurityGroupIDs: []string{aws.ToString(sg.GroupId)},
		Deployment:       b.deployment,
		Sleep: func(_ context.Context, d time.Duration) error {
			b.sleeps = append(b.sleeps, d)
			return nil
		},
	}
	if tweak != nil {
		tweak(&b.opts)
	}
	recCfg := cfg.Copy()
	recCfg.HTTPClient = &http.Client{Transport: b.rec}
	client := ec2.NewFromConfig(recCfg, func(o *ec2.Options) { o.APIOptions = append(o.APIOptions, b.faults.add) })
	l, err := ec2launcher.New(client, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, b
}

// createInstanceProfile creates an IAM instance profile in moto, which
// checks that RunInstances names an existing one. The project has no IAM
// client (Terraform owns IAM), so this is one signed IAM query call.
func createInstanceProfile(t *testing.T, cfg aws.Config, name string) {
	t.Helper()
	ctx := context.Background()
	form := url.Values{"Action": {"CreateInstanceProfile"}, "Version": {"2010-05-08"}, "InstanceProfileName": {name}}
	body := form.Encode()
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

func (b *bundle) describe(t *testing.T, id string) types.Instance {
	t.Helper()
	out, err := b.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		t.Fatalf("DescribeInstances %s: %v", id, err)
	}
	return out.Reservations[0].Instances[0]
}

func (b *bundle) attr(t *testing.T, id string, a types.InstanceAttributeName) *ec2.DescribeInstanceAttributeOutput {
	t.Helper()
	out, err := b.ec2.DescribeInstanceAttribute(context.Background(), &ec2.DescribeInstanceAttributeInput{InstanceId: aws.String(id), Attribute: a})
	if err != nil {
		t.Fatalf("DescribeInstanceAttribute %s %s: %v", id, a, err)
	}
	return out
}

func tagMap(tags []types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// formTags reads TagSpecification.N (ResourceType and tags) from a form.
func formTags(form url.Values) map[string]map[string]string {
	out := map[string]map[string]string{}
	for i := 1; ; i++ {
		rt := form.Get(fmt.Sprintf("TagSpecification.%d.ResourceType", i))
		if rt == "" {
			return out
		}
		tags := map[string]string{}
		for j := 1; ; j++ {
			k := form.Get(fmt.Sprintf("TagSpecification.%d.Tag.%d.Key", i, j))
			if k == "" {
				break
			}
			tags[k] = form.Get(fmt.Sprintf("TagSpecification.%d.Tag.%d.Value", i, j))
		}
		out[rt] = tags
	}
}

const gb = int64(1_000_000_000)

func TestLaunchRequestAndInstance(t *testing.T) {
	l, b := setup(t, nil)
	ctx := context.Background()
	const jobID = "4b0a0c5e-7d0f-4a8e-9a1c-2f6a1d2b3c4d"
	const traceID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"

	w, err := l.Launch(ctx, launcher.Request{JobID: jobID, TraceID: traceID, EstimatedSizeBytes: 5 * gb})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if !strings.HasPrefix(w.ID, "i-") || w.JobID != jobID || w.InstanceType != "t3.medium" || !w.Running {
		t.Fatalf("worker = %+v", w)
	}

	// What the SDK sent.
	runs := b.rec.RunRequests()
	if len(runs) != 1 {
		t.Fatalf("%d RunInstances requests sent, want 1", len(runs))
	}
	f := runs[0]
	want := map[string]string{
		"ImageId":                           b.opts.AMI,
		"InstanceType":                      "t3.medium",
		"MinCount":                          "1",
		"MaxCount":                          "1",
		"InstanceInitiatedShutdownBehavior": "terminate",
		"MetadataOptions.HttpTokens":        "required",
		"MetadataOptions.HttpEndpoint":      "enabled",
		"IamInstanceProfile.Name":           b.opts.InstanceProfile,
		"SubnetId":                          b.opts.SubnetID,
		"SecurityGroupId.1":                 b.opts.SecurityGroupIDs[0],
		"UserData":                          base64.StdEncoding.EncodeToString([]byte(jobID)),
	}
	for k, v := range want {
		if got := f.Get(k); got != v {
			t.Errorf("request %s = %q, want %q", k, got, v)
		}
	}
	ud, err := base64.StdEncoding.DecodeString(f.Get("UserData"))
	if err != nil || string(ud) != jobID {
		t.Errorf("user data decodes to %q (%v); want exactly the job id", ud, err)
	}
	if f.Get("ClientToken") == "" {
		t.Error("no ClientToken: a retried request could launch twice")
	}
	for k := range f {
		if strings.HasPrefix(k, "InstanceMarketOptions") {
			t.Errorf("on-demand launch sent %s", k)
		}
	}
	wantTags := map[string]string{
		"Name": "seren-replication-worker-" + jobID, "JobId": jobID, "TraceId": traceID,
		"ManagedBy": "seren-replication-system", "SerenDeployment": b.deployment,
	}
	specs := formTags(f)
	for _, rt := range []string{"instance", "volume"} {
		if fmt.Sprint(specs[rt]) != fmt.Sprint(wantTags) {
			t.Errorf("%s tags sent = %v, want %v", rt, specs[rt], wantTags)
		}
	}

	// What moto made of it.
	inst := b.describe(t, w.ID)
	if inst.InstanceType != "t3.medium" || aws.ToString(inst.ImageId) != b.opts.AMI || aws.ToString(inst.SubnetId) != b.opts.SubnetID {
		t.Errorf("instance type %s image %s subnet %s", inst.InstanceType, aws.ToString(inst.ImageId), aws.ToString(inst.SubnetId))
	}
	if got := tagMap(inst.Tags); fmt.Sprint(got) != fmt.Sprint(wantTags) {
		t.Errorf("instance tags = %v, want %v", got, wantTags)
	}
	if inst.IamInstanceProfile == nil || !strings.HasSuffix(aws.ToString(inst.IamInstanceProfile.Arn), "/"+b.opts.InstanceProfile) {
		t.Errorf("instance profile = %+v", inst.IamInstanceProfile)
	}
	if inst.InstanceLifecycle == types.InstanceLifecycleTypeSpot {
		t.Error("on-demand launch produced a spot instance")
	}
	if got := b.attr(t, w.ID, types.InstanceAttributeNameUserData); got.UserData == nil {
		t.Error("instance has no user data")
	} else if ud, _ := base64.StdEncoding.DecodeString(aws.ToString(got.UserData.Value)); string(ud) != jobID {
		t.Errorf("instance user data = %q, want the job id", ud)
	}
	if got := b.attr(t, w.ID, types.InstanceAttributeNameInstanceInitiatedShutdownBehavior); got.InstanceInitiatedShutdownBehavior == nil ||
		aws.ToString(got.InstanceInitiatedShutdownBehavior.Value) != "terminate" {
		t.Errorf("shutdown behavior = %+v", got.InstanceInitiatedShutdownBehavior)
	}
	vols, err := b.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("tag:JobId"), Values: []string{jobID}}}})
	if err != nil || len(vols.Volumes) == 0 {
		t.Errorf("no volume tagged JobId=%s (%v)", jobID, err)
	}
	if len(b.sleeps) != 0 {
		t.Errorf("slept %v on a clean launch", b.sleeps)
	}
}

func TestInstanceTypePerSizeBand(t *testing.T) {
	l, b := setup(t, nil)
	cases := []struct {
		size int64
		want string
	}{
		{1, "t3.medium"},
		{10*gb - 1, "t3.medium"},
		{10 * gb, "c5.large"},
		{100*gb - 1, "c5.large"},
		{100 * gb, "c5.2xlarge"},
		{1000 * gb, "c5.2xlarge"},
		{1000*gb + 1, "c5.4xlarge"},
		{0, ec2launcher.DefaultUnknownSizeType},
	}
	for i, tc := range cases {
		w, err := l.Launch(context.Background(), launcher.Request{JobID: fmt.Sprintf("job-band-%d", i), EstimatedSizeBytes: tc.size})
		if err != nil {
			t.Fatalf("size %d: %v", tc.size, err)
		}
		runs := b.rec.RunRequests()
		if got := runs[len(runs)-1].Get("InstanceType"); got != tc.want {
			t.Errorf("size %d: sent InstanceType %s, want %s", tc.size, got, tc.want)
		}
		if got := b.describe(t, w.ID).InstanceType; string(got) != tc.want {
			t.Errorf("size %d: moto instance type %s, want %s", tc.size, got, tc.want)
		}
	}
}

func TestInstanceTypeOverrides(t *testing.T) {
	l, b := setup(t, func(o *ec2launcher.Options) { o.BandTypes = map[string]string{"small": "t3.large"} })
	if _, err := l.Launch(context.Background(), launcher.Request{JobID: "job-ovr-1", EstimatedSizeBytes: gb}); err != nil {
		t.Fatal(err)
	}
	if got := b.rec.RunRequests()[0].Get("InstanceType"); got != "t3.large" {
		t.Errorf("band override: sent %s", got)
	}
	l2, b2 := setup(t, func(o *ec2launcher.Options) { o.InstanceType = "m5.xlarge" })
	if _, err := l2.Launch(context.Background(), launcher.Request{JobID: "job-ovr-2", EstimatedSizeBytes: 5000 * gb}); err != nil {
		t.Fatal(err)
	}
	if got := b2.rec.RunRequests()[0].Get("InstanceType"); got != "m5.xlarge" {
		t.Errorf("global override: sent %s", got)
	}
}

func TestSpotRequest(t *testing.T) {
	l, b := setup(t, func(o *ec2launcher.Options) { o.Spot = true; o.SpotMaxPrice = "0.25" })
	w, err := l.Launch(context.Background(), launcher.Request{JobID: "job-spot", EstimatedSizeBytes: 50 * gb})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	f := b.rec.RunRequests()[0]
	for k, v := range map[string]string{
		"InstanceMarketOptions.MarketType":                               "spot",
		"InstanceMarketOptions.SpotOptions.SpotInstanceType":             "one-time",
		"InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior": "terminate",
		"InstanceMarketOptions.SpotOptions.MaxPrice":                     "0.25",
		"InstanceType":               "c5.large",
		"MetadataOptions.HttpTokens": "required",
	} {
		if got := f.Get(k); got != v {
			t.Errorf("request %s = %q, want %q", k, got, v)
		}
	}
	if lc := b.describe(t, w.ID).InstanceLifecycle; lc != types.InstanceLifecycleTypeSpot {
		t.Errorf("instance lifecycle %q, want spot", lc)
	}
}

func TestSpotFallsBackToOnDemand(t *testing.T) {
	l, b := setup(t, func(o *ec2launcher.Options) { o.Spot = true })
	b.faults.spot = true
	b.faults.codes = []string{"InsufficientInstanceCapacity"}
	w, err := l.Launch(context.Background(), launcher.Request{JobID: "job-fallback", EstimatedSizeBytes: 500 * gb})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	runs := b.rec.RunRequests()
	if len(runs) != 1 {
		t.Fatalf("%d requests reached EC2, want 1 (the on-demand one)", len(runs))
	}
	if runs[0].Get("InstanceMarketOptions.MarketType") != "" || runs[0].Get("InstanceType") != "c5.2xlarge" {
		t.Errorf("fallback request: market %q type %q", runs[0].Get("InstanceMarketOptions.MarketType"), runs[0].Get("InstanceType"))
	}
	if lc := b.describe(t, w.ID).InstanceLifecycle; lc == types.InstanceLifecycleTypeSpot {
		t.Error("fallback instance is spot")
	}
	if len(b.sleeps) != 0 {
		t.Errorf("fallback waited %v; it should go on demand at once", b.sleeps)
	}
}

// An account without the spot service-linked role answers a spot request
// with an error outside the capacity codes; the worker must still start,
// on demand, at once.
func TestSpotWithoutServiceLinkedRoleFallsBackToOnDemand(t *testing.T) {
	l, b := setup(t, func(o *ec2launcher.Options) { o.Spot = true })
	b.faults.spot = true
	b.faults.codes = []string{"AuthFailure.ServiceLinkedRoleCreationNotPermitted"}
	w, err := l.Launch(context.Background(), launcher.Request{JobID: "job-no-slr", EstimatedSizeBytes: 5 * gb})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	runs := b.rec.RunRequests()
	if len(runs) != 1 || runs[0].Get("InstanceMarketOptions.MarketType") != "" {
		t.Fatalf("requests that reached EC2: %v; want one on-demand request", runs)
	}
	if lc := b.describe(t, w.ID).InstanceLifecycle; lc == types.InstanceLifecycleTypeSpot {
		t.Error("fallback instance is spot")
	}
	if len(b.sleeps) != 0 {
		t.Errorf("fallback waited %v", b.sleeps)
	}
}

func TestTransientErrorsAreRetriedWithBackoff(t *testing.T) {
	l, b := setup(t, func(o *ec2launcher.Options) { o.BaseDelay = time.Second; o.MaxDelay = 3 * time.Second })
	b.faults.codes = []string{"RequestLimitExceeded", "InsufficientInstanceCapacity", "ServiceUnavailable"}
	w, err := l.Launch(context.Background(), launcher.Request{JobID: "job-retry"})
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if b.faults.calls != 4 || len(b.rec.RunRequests()) != 1 {
		t.Fatalf("%d attempts, %d sent; want 4 attempts, 1 sent", b.faults.calls, len(b.rec.RunRequests()))
	}
	b.describe(t, w.ID)
	if len(b.sleeps) != 3 {
		t.Fatalf("slept %v, want 3 backoffs", b.sleeps)
	}
	// Full jitter within [d/2, d] for d = 1s, 2s, 3s (capped).
	for i, max := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		if d := b.sleeps[i]; d < max/2 || d > max {
			t.Errorf("backoff %d = %v, want within [%v, %v]", i+1, d, max/2, max)
		}
	}
	// Every attempt used its own client token.
	if tok := b.rec.RunRequests()[0].Get("ClientToken"); !strings.HasSuffix(tok, "-4") {
		t.Errorf("client token %q of attempt 4", tok)
	}
}

func TestExhaustedCapacityIsErrCapacity(t *testing.T) {
	l, b := setup(t, func(o *ec2launcher.Options) { o.MaxAttempts = 3 })
	b.faults.codes = []string{"InsufficientInstanceCapacity", "InsufficientInstanceCapacity", "InsufficientInstanceCapacity"}
	_, err := l.Launch(context.Background(), launcher.Request{JobID: "job-nocap"})
	if !errors.Is(err, launcher.ErrCapacity) {
		t.Fatalf("Launch = %v; want ErrCapacity", err)
	}
	if code := ec2launcher.ErrorCode(err); code != "InsufficientInstanceCapacity" {
		t.Errorf("ErrorCode = %q", code)
	}
	if b.faults.calls != 3 || len(b.sleeps) != 2 || len(b.rec.RunRequests()) != 0 {
		t.Errorf("calls %d sleeps %d sent %d; want 3, 2, 0", b.faults.calls, len(b.sleeps), len(b.rec.RunRequests()))
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	l, b := setup(t, func(o *ec2launcher.Options) { o.SubnetID = "subnet-0000deadbeef0000" })
	_, err := l.Launch(context.Background(), launcher.Request{JobID: "job-badsubnet"})
	if err == nil {
		t.Fatal("Launch into a missing subnet succeeded")
	}
	if errors.Is(err, launcher.ErrCapacity) {
		t.Errorf("a missing subnet is not a capacity problem: %v", err)
	}
	if !strings.HasPrefix(ec2launcher.ErrorCode(err), "InvalidSubnet") || hint.Of(err) == "" {
		t.Errorf("err = %v (code %q, hint %q)", err, ec2launcher.ErrorCode(err), hint.Of(err))
	}
	if len(b.sleeps) != 0 || len(b.rec.RunRequests()) != 1 {
		t.Errorf("retried a permanent error: sleeps %v, sent %d", b.sleeps, len(b.rec.RunRequests()))
	}
}

func TestCancelledWhileBackingOff(t *testing.T) {
	_, b := setup(t, nil)
	opts := b.opts
	opts.Sleep = nil // the real timer
	opts.BaseDelay = time.Hour
	cfg := awstest.Config(t, awstest.EC2)
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.APIOptions = append(o.APIOptions, b.faults.add) })
	l, err := ec2launcher.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	b.faults.codes = []string{"InsufficientInstanceCapacity"}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = l.Launch(ctx, launcher.Request{JobID: "job-cancel"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Launch = %v; want the context's error", err)
	}
}

func TestListAndStop(t *testing.T) {
	l, b := setup(t, nil)
	ctx := context.Background()
	w1, err := l.Launch(ctx, launcher.Request{JobID: "job-list-1"})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := l.Launch(ctx, launcher.Request{JobID: "job-list-2", EstimatedSizeBytes: 20 * gb})
	if err != nil {
		t.Fatal(err)
	}
	// An instance of another deployment and an unmanaged one are not listed.
	other, _ := setup(t, nil)
	wOther, err := other.Launch(ctx, launcher.Request{JobID: "job-other"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := b.ec2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(b.opts.AMI), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	plainID := aws.ToString(plain.Instances[0].InstanceId)

	got := list(t, l)
	if len(got) != 2 || got[w1.ID].JobID != "job-list-1" || got[w2.ID].JobID != "job-list-2" || got[w2.ID].InstanceType != "c5.large" || !got[w1.ID].Running {
		t.Fatalf("List = %+v", got)
	}

	if err := l.Stop(ctx, w1.ID); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := list(t, l); len(got) != 1 || got[w2.ID].JobID != "job-list-2" {
		t.Fatalf("after Stop, List = %+v", got)
	}
	if err := l.Stop(ctx, w1.ID); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := l.Stop(ctx, "i-0123456789abcdef0"); err != nil {
		t.Errorf("Stop of an unknown instance: %v", err)
	}
	if err := l.Stop(ctx, "not-an-instance"); err == nil {
		t.Error("Stop accepted a non-instance id")
	}
	if err := l.Stop(ctx, plainID); err == nil {
		t.Error("Stop terminated an instance it does not manage")
	}
	if err := l.Stop(ctx, wOther.ID); err == nil {
		t.Error("Stop terminated another deployment's worker")
	}
	if s := b.describe(t, plainID).State; s == nil || s.Name != types.InstanceStateNameRunning {
		t.Errorf("unmanaged instance state %+v", s)
	}
	if err := other.Stop(ctx, wOther.ID); err != nil {
		t.Errorf("Stop by its own deployment: %v", err)
	}
}

func list(t *testing.T, l *ec2launcher.Launcher) map[string]launcher.Worker {
	t.Helper()
	ws, err := l.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	m := map[string]launcher.Worker{}
	for _, w := range ws {
		m[w.ID] = w
	}
	return m
}

func TestNewAndLaunchValidate(t *testing.T) {
	if _, err := ec2launcher.New(&ec2.Client{}, ec2launcher.Options{}); err == nil || hint.Of(err) == "" {
		t.Errorf("New without AMI = %v; want an error with a hint", err)
	}
	l, err := ec2launcher.New(&ec2.Client{}, ec2launcher.Options{AMI: "ami-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "job id with spaces", "job;rm -rf /", strings.Repeat("x", 65)} {
		if _, err := l.Launch(context.Background(), launcher.Request{JobID: id}); err == nil {
			t.Errorf("Launch accepted job id %q", id)
		}
	}
}

func TestSizeBand(t *testing.T) {
	for _, tc := range []struct {
		size       int64
		band, want string
	}{
		{-1, "unknown", "c5.2xlarge"},
		{0, "unknown", "c5.2xlarge"},
		{9 * gb, "small", "t3.medium"},
		{10 * gb, "medium", "c5.large"},
		{99 * gb, "medium", "c5.large"},
		{100 * gb, "large", "c5.2xlarge"},
		{1000 * gb, "large", "c5.2xlarge"},
		{1001 * gb, "xlarge", "c5.4xlarge"},
	} {
		if b := ec2launcher.SizeBand(tc.size); b.Name != tc.band || b.InstanceType != tc.want {
			t.Errorf("SizeBand(%d) = %+v, want %s %s", tc.size, b, tc.band, tc.want)
		}
	}
}
