package cwtelemetry_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/serenorg/postgres-seren-replicator/internal/telemetry/cwtelemetry"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

type bundle struct {
	cw  *cloudwatch.Client
	now time.Time
}

func setup(t *testing.T, opts cwtelemetry.Options) (*cwtelemetry.Recorder, *bundle) {
	t.Helper()
	cfg := awstest.Config(t, awstest.CloudWatch)
	client, err := cwtelemetry.NewClient(cfg, os.Getenv(awstest.CloudWatchProtocolVar))
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{cw: client, now: time.Now().UTC().Truncate(time.Minute)}
	if opts.Now == nil {
		opts.Now = func() time.Time { return b.now }
	}
	return cwtelemetry.New(client, opts), b
}

// stat returns the Sum and SampleCount of one metric with exactly dims.
func (b *bundle) stat(t *testing.T, name string, dims map[string]string) (sum, count float64) {
	t.Helper()
	in := &cloudwatch.GetMetricStatisticsInput{
		Namespace:  aws.String(cwtelemetry.Namespace),
		MetricName: aws.String(name),
		StartTime:  aws.Time(b.now.Add(-time.Hour)),
		EndTime:    aws.Time(b.now.Add(time.Hour)),
		Period:     aws.Int32(7200),
		Statistics: []types.Statistic{types.StatisticSum, types.StatisticSampleCount},
	}
	for k, v := range dims {
		in.Dimensions = append(in.Dimensions, types.Dimension{Name: aws.String(k), Value: aws.String(v)})
	}
	out, err := b.cw.GetMetricStatistics(context.Background(), in)
	if err != nil {
		t.Fatalf("GetMetricStatistics %s: %v", name, err)
	}
	for _, dp := range out.Datapoints {
		sum += aws.ToFloat64(dp.Sum)
		count += aws.ToFloat64(dp.SampleCount)
	}
	return sum, count
}

func (b *bundle) wantSum(t *testing.T, name string, dims map[string]string, want float64) {
	t.Helper()
	if got, _ := b.stat(t, name, dims); got != want {
		t.Errorf("%s %v: sum %v, want %v", name, dims, got, want)
	}
}

func TestGuideMetricsReachCloudWatch(t *testing.T) {
	r, b := setup(t, cwtelemetry.Options{})
	ctx := context.Background()
	cmd := awstest.Name(t, "cmd") // unique dimension value isolates this test in the shared emulator
	typ := awstest.Name(t, "c5")

	r.JobSubmitted(cmd)
	r.JobSubmitted(cmd)
	r.JobProvisioned(typ, "large", 90*time.Second) // queue wait included: no ProvisioningDuration
	r.JobProvisioned(typ, "large", 30*time.Second)
	r.WorkerStarted(typ, 70*time.Second) // launch to running
	r.WorkerStarted(typ, 50*time.Second)
	r.ProvisioningFailed(typ, "InsufficientInstanceCapacity")
	r.JobFinished(cmd, "completed", 10*time.Minute)
	r.JobFinished(cmd, "failed", 2*time.Minute)
	r.JobFinished(cmd, "timeout", 8*time.Hour)
	r.JobFinished(cmd, "cancelled", time.Second)
	if n := r.Buffered(); n != 15 {
		t.Fatalf("buffered %d points, want 15", n)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if n := r.Buffered(); n != 0 {
		t.Fatalf("after Flush %d points still buffered", n)
	}

	b.wantSum(t, "JobSubmitted", map[string]string{"Command": cmd}, 2)
	b.wantSum(t, "JobProvisioned", map[string]string{"InstanceType": typ, "InstanceSize": "large"}, 2)
	b.wantSum(t, "ProvisioningDuration", map[string]string{"InstanceType": typ}, 120)
	b.wantSum(t, "ProvisioningFailed", map[string]string{"InstanceType": typ, "Reason": "InsufficientInstanceCapacity"}, 1)
	b.wantSum(t, "JobCompleted", map[string]string{"Command": cmd, "Status": "completed"}, 1)
	b.wantSum(t, "JobFailed", map[string]string{"Command": cmd, "Status": "failed"}, 1)
	b.wantSum(t, "JobTimedOut", map[string]string{"Command": cmd, "Status": "timeout"}, 1)
	b.wantSum(t, "JobCancelled", map[string]string{"Command": cmd, "Status": "cancelled"}, 1)
	b.wantSum(t, "JobDuration", map[string]string{"Command": cmd, "Status": "completed"}, 600)

	// The units are the guide's: seconds for durations, counts otherwise.
	out, err := b.cw.ListMetrics(ctx, &cloudwatch.ListMetricsInput{
		Namespace:  aws.String(cwtelemetry.Namespace),
		Dimensions: []types.DimensionFilter{{Name: aws.String("InstanceType"), Value: aws.String(typ)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range out.Metrics {
		names[aws.ToString(m.MetricName)] = true
	}
	for _, n := range []string{"JobProvisioned", "ProvisioningDuration", "ProvisioningFailed"} {
		if !names[n] {
			t.Errorf("ListMetrics by InstanceType misses %s (got %v)", n, names)
		}
	}
}

func TestFlushBatchesLargeBuffers(t *testing.T) {
	r, b := setup(t, cwtelemetry.Options{})
	cmd := awstest.Name(t, "cmd")
	const n = 2500 // three PutMetricData requests
	for i := 0; i < n; i++ {
		r.JobSubmitted(cmd)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	b.wantSum(t, "JobSubmitted", map[string]string{"Command": cmd}, n)
}

func TestFailedFlushKeepsPoints(t *testing.T) {
	r, b := setup(t, cwtelemetry.Options{})
	cmd := awstest.Name(t, "cmd")
	r.JobSubmitted(cmd)

	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Flush(dead); err == nil {
		t.Fatal("Flush with a cancelled context succeeded")
	}
	if got := r.Buffered(); got != 1 {
		t.Fatalf("after a failed flush %d points buffered, want 1", got)
	}
	r.JobSubmitted(cmd)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	b.wantSum(t, "JobSubmitted", map[string]string{"Command": cmd}, 2)
}

func TestBufferIsBounded(t *testing.T) {
	r, b := setup(t, cwtelemetry.Options{MaxBuffered: 3})
	cmd := awstest.Name(t, "cmd")
	for i := 0; i < 5; i++ {
		r.JobSubmitted(cmd)
	}
	err := r.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "dropped 2") {
		t.Fatalf("Flush = %v; want a report of 2 dropped points", err)
	}
	b.wantSum(t, "JobSubmitted", map[string]string{"Command": cmd}, 3)
}

func TestRunFlushesOnStop(t *testing.T) {
	r, b := setup(t, cwtelemetry.Options{})
	cmd := awstest.Name(t, "cmd")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, time.Hour, func(err error) { t.Errorf("flush: %v", err) })
	}()
	r.JobSubmitted(cmd)
	cancel()
	<-done
	b.wantSum(t, "JobSubmitted", map[string]string{"Command": cmd}, 1)
}

func TestClientOptions(t *testing.T) {
	for _, p := range []string{"", cwtelemetry.ProtocolAWSJSON, cwtelemetry.ProtocolAWSQuery} {
		if _, err := cwtelemetry.ClientOptions(p); err != nil {
			t.Errorf("ClientOptions(%q): %v", p, err)
		}
	}
	if _, err := cwtelemetry.ClientOptions("cbor2"); err == nil {
		t.Error("unknown protocol accepted")
	}
}
