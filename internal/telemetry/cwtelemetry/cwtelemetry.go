// Package cwtelemetry is the AWS telemetry.Metrics: CloudWatch custom
// metrics in namespace SerenReplication under the guide's names.
//
//	metric                 unit     dimensions
//	JobSubmitted           Count    Command
//	JobProvisioned         Count    InstanceType, InstanceSize
//	ProvisioningDuration   Seconds  InstanceType
//	ProvisioningFailed     Count    InstanceType, Reason
//	JobCompleted           Count    Command, Status   (status completed)
//	JobFailed              Count    Command, Status   (status failed)
//	JobTimedOut            Count    Command, Status   (status timeout)
//	JobCancelled           Count    Command, Status   (status cancelled)
//	JobDuration            Seconds  Command, Status
//
// Recording never blocks on the network: data points are buffered and sent
// by Flush (PutMetricData, batched), which a Lambda calls before it returns
// and a long-running process calls periodically (Run). A failed flush keeps
// the points for the next one, up to MaxBuffered.
package cwtelemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"

	"github.com/serenorg/postgres-seren-replicator/internal/telemetry"
)

// Namespace is the default CloudWatch namespace of every metric
// (Options.Namespace overrides it: Terraform's metrics_namespace,
// SEREN_METRICS_NAMESPACE).
const Namespace = "SerenReplication"

// Metric names (the guide's, plus job outcomes and duration).
const (
	MetricJobSubmitted         = "JobSubmitted"
	MetricJobProvisioned       = "JobProvisioned"
	MetricProvisioningDuration = "ProvisioningDuration"
	MetricProvisioningFailed   = "ProvisioningFailed"
	MetricJobCompleted         = "JobCompleted"
	MetricJobFailed            = "JobFailed"
	MetricJobTimedOut          = "JobTimedOut"
	MetricJobCancelled         = "JobCancelled"
	MetricJobDuration          = "JobDuration"
)

// outcomeMetric maps a terminal status to its count metric.
func outcomeMetric(status string) string {
	switch status {
	case "completed":
		return MetricJobCompleted
	case "failed":
		return MetricJobFailed
	case "timeout":
		return MetricJobTimedOut
	case "cancelled":
		return MetricJobCancelled
	}
	return "JobFinished"
}

// batchSize is PutMetricData's limit of data points per request.
const batchSize = 1000

// DefaultMaxBuffered bounds the points held between flushes.
const DefaultMaxBuffered = 10000

// API is the part of the CloudWatch client the recorder uses.
type API interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// Options configure a Recorder.
type Options struct {
	// Namespace is where the metrics go (default Namespace).
	Namespace string
	// Now is the clock that stamps data points (default time.Now).
	Now func() time.Time
	// MaxBuffered bounds buffered points; further points are dropped and
	// counted until a flush succeeds (default 10000).
	MaxBuffered int
}

// Recorder buffers metrics and sends them to CloudWatch on Flush.
type Recorder struct {
	api  API
	opts Options

	mu      sync.Mutex
	buf     []types.MetricDatum
	dropped int
}

var _ telemetry.Metrics = (*Recorder)(nil)

// New returns a recorder sending through api.
func New(api API, opts Options) *Recorder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBuffered <= 0 {
		opts.MaxBuffered = DefaultMaxBuffered
	}
	if opts.Namespace == "" {
		opts.Namespace = Namespace
	}
	return &Recorder{api: api, opts: opts}
}

// Protocols that ClientOptions accepts besides the SDK default ("").
const (
	ProtocolAWSJSON  = "awsjson"
	ProtocolAWSQuery = "awsquery"
)

// ClientOptions returns the CloudWatch client option for a wire protocol:
// "" keeps the SDK's default (what real AWS wants); "awsjson" or "awsquery"
// is for emulators that do not speak the default (moto 5.2.1 does not
// route Smithy RPC v2 CBOR). With an override, request compression is off
// too: the SDK labels large bodies gzip but, with a swapped protocol, sends
// them plain, which moto rejects. Only test configuration should set it.
func ClientOptions(protocol string) (func(*cloudwatch.Options), error) {
	switch protocol {
	case "":
		return func(*cloudwatch.Options) {}, nil
	case ProtocolAWSJSON:
		return func(o *cloudwatch.Options) {
			o.Protocol = awsjson.New11(cwschemas.GraniteServiceVersion20100801)
			o.DisableRequestCompression = true
		}, nil
	case ProtocolAWSQuery:
		return func(o *cloudwatch.Options) {
			o.Protocol = awsquery.New(cwschemas.GraniteServiceVersion20100801)
			o.DisableRequestCompression = true
		}, nil
	}
	return nil, fmt.Errorf("unknown CloudWatch protocol %q (known: %q, %q, or empty for the default)", protocol, ProtocolAWSJSON, ProtocolAWSQuery)
}

// NewClient builds the CloudWatch client from cfg (config.LoadDefaultConfig,
// so AWS_ENDPOINT_URL_CLOUDWATCH is honoured) with the given protocol.
func NewClient(cfg aws.Config, protocol string) (*cloudwatch.Client, error) {
	opt, err := ClientOptions(protocol)
	if err != nil {
		return nil, err
	}
	return cloudwatch.NewFromConfig(cfg, opt), nil
}

func dim(name, value string) types.Dimension {
	if value == "" {
		value = "unknown"
	}
	if len(value) > 255 {
		value = value[:255]
	}
	return types.Dimension{Name: aws.String(name), Value: aws.String(value)}
}

func (r *Recorder) add(name string, unit types.StandardUnit, value float64, dims ...types.Dimension) {
	d := types.MetricDatum{
		MetricName: aws.String(name),
		Unit:       unit,
		Value:      aws.Float64(value),
		Timestamp:  aws.Time(r.opts.Now()),
		Dimensions: dims,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) >= r.opts.MaxBuffered {
		r.dropped++
		return
	}
	r.buf = append(r.buf, d)
}

// JobSubmitted counts a submitted job.
func (r *Recorder) JobSubmitted(command string) {
	r.add(MetricJobSubmitted, types.StandardUnitCount, 1, dim("Command", command))
}

// JobProvisioned counts a launched worker. (d, the time since the job
// entered provisioning, includes its wait in the queue; ProvisioningDuration
// is launch to running instead, recorded by WorkerStarted.)
func (r *Recorder) JobProvisioned(instanceType, instanceSize string, d time.Duration) {
	r.add(MetricJobProvisioned, types.StandardUnitCount, 1, dim("InstanceType", instanceType), dim("InstanceSize", instanceSize))
}

// WorkerStarted records ProvisioningDuration: from the worker instance's
// launch to the worker running its job (the guide's slow-provisioning
// alarm watches it; queue waits are not in it).
func (r *Recorder) WorkerStarted(instanceType string, d time.Duration) {
	r.add(MetricProvisioningDuration, types.StandardUnitSeconds, d.Seconds(), dim("InstanceType", instanceType))
}

// ProvisioningFailed counts a failed launch. reason should be a short
// code (an EC2 error code), not a message: it is a dimension.
func (r *Recorder) ProvisioningFailed(instanceType, reason string) {
	r.add(MetricProvisioningFailed, types.StandardUnitCount, 1, dim("InstanceType", instanceType), dim("Reason", reason))
}

// JobFinished counts a job's outcome and records its duration.
func (r *Recorder) JobFinished(command, status string, d time.Duration) {
	r.add(outcomeMetric(status), types.StandardUnitCount, 1, dim("Command", command), dim("Status", status))
	r.add(MetricJobDuration, types.StandardUnitSeconds, d.Seconds(), dim("Command", command), dim("Status", status))
}

// Buffered returns how many points wait for the next Flush.
func (r *Recorder) Buffered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buf)
}

// Flush sends every buffered point. Points of a failed request are kept
// for the next Flush (as far as MaxBuffered allows).
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	pending, dropped := r.buf, r.dropped
	r.buf, r.dropped = nil, 0
	r.mu.Unlock()

	var errs []error
	if dropped > 0 {
		errs = append(errs, fmt.Errorf("cloudwatch metrics: dropped %d data points (buffer of %d full)", dropped, r.opts.MaxBuffered))
	}
	for len(pending) > 0 {
		n := min(batchSize, len(pending))
		_, err := r.api.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{
			Namespace:  aws.String(r.opts.Namespace),
			MetricData: pending[:n],
		})
		if err != nil {
			r.requeue(pending)
			errs = append(errs, fmt.Errorf("cloudwatch PutMetricData (%d points) in %s: %w", len(pending), r.opts.Namespace, err))
			break
		}
		pending = pending[n:]
	}
	return errors.Join(errs...)
}

// requeue puts unsent points back in front of newer ones.
func (r *Recorder) requeue(unsent []types.MetricDatum) {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := append(append([]types.MetricDatum(nil), unsent...), r.buf...)
	if over := len(all) - r.opts.MaxBuffered; over > 0 {
		r.dropped += over
		all = all[over:]
	}
	r.buf = all
}

// Run flushes every interval until ctx ends, then flushes once more with
// a short deadline of its own. Flush errors go to onErr (may be nil).
func (r *Recorder) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	report := func(err error) {
		if err != nil && onErr != nil {
			onErr(err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			report(r.Flush(fctx))
			cancel()
			return
		case <-t.C:
			report(r.Flush(ctx))
		}
	}
}
