// Package ec2launcher is the AWS launcher.Launcher: one EC2 instance per
// job, sized from the job's estimated size (the guide's table, see
// SizeBand), optionally on spot capacity with an on-demand fallback.
//
// What a launch sends, and why:
//   - UserData is the job id and nothing else (no secret, no URL): the
//     worker AMI's boot unit reads it over IMDSv2 and runs
//     `postgres-seren-replicator worker --job-id <id>`; the worker reads
//     everything else from DynamoDB and decrypts with KMS.
//   - MetadataOptions HttpTokens=required (IMDSv2 only, hop limit 1).
//   - InstanceInitiatedShutdownBehavior=terminate, so the worker ends its
//     own instance by shutting down.
//   - Tags Name, JobId, TraceId, ManagedBy=seren-replication-system (and
//     SerenDeployment when configured) on the instance and its volumes;
//     List finds workers by ManagedBy (and SerenDeployment).
//   - A ClientToken per attempt, so an SDK-level retry of a request that
//     did launch cannot launch a second instance.
//
// RunInstances is retried with exponential backoff (full jitter) only on
// transient error codes; when those persist the error wraps
// launcher.ErrCapacity so the job stays queued. Any other error (bad AMI,
// missing permission) is returned at once, with a hint where known. The
// underlying smithy.APIError stays reachable with errors.As, and
// ErrorCode(err) gives the code for the ProvisioningFailed metric.
package ec2launcher

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
)

// Tag keys and values the launcher sets and lists by.
const (
	TagName       = "Name"
	TagJobID      = "JobId"
	TagTraceID    = "TraceId"
	TagManagedBy  = "ManagedBy"
	TagDeployment = "SerenDeployment"
	ManagedBy     = "seren-replication-system"
)

// API is the part of the EC2 client the launcher uses (*ec2.Client).
type API interface {
	RunInstances(ctx context.Context, in *ec2.RunInstancesInput, optFns ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error)
	TerminateInstances(ctx context.Context, in *ec2.TerminateInstancesInput, optFns ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	ec2.DescribeInstancesAPIClient
}

// Options configure a Launcher.
type Options struct {
	// AMI is the worker image (required).
	AMI string
	// InstanceProfile is the worker's IAM instance profile, by name or ARN.
	InstanceProfile string
	// SubnetID and SecurityGroupIDs place the worker; empty uses the
	// default VPC's.
	SubnetID         string
	SecurityGroupIDs []string
	// InstanceType, when set, overrides the size-based choice for every job.
	InstanceType string
	// BandTypes overrides the type of single size bands ("small",
	// "medium", "large", "xlarge", "unknown").
	BandTypes map[string]string
	// Spot requests spot capacity first, on-demand when spot has none.
	Spot bool
	// SpotMaxPrice caps the spot price (USD/hour); empty = on-demand price.
	SpotMaxPrice string
	// NamePrefix prefixes the Name tag (default seren-replication-worker).
	NamePrefix string
	// Deployment, when set, is tagged as SerenDeployment and List and
	// Stop only see this deployment's workers (dev and prod in one account).
	Deployment string
	// MaxAttempts bounds RunInstances attempts on transient errors
	// (default 4); BaseDelay and MaxDelay shape the backoff (1 s, 20 s).
	MaxAttempts int
	BaseDelay   time.Duration
	MaxDelay    time.Duration
	// Sleep waits between attempts (default: a timer honouring ctx).
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Launcher launches workers as EC2 instances.
type Launcher struct {
	api  API
	opts Options
}

var _ launcher.Launcher = (*Launcher)(nil)

// New returns a launcher.
func New(api API, opts Options) (*Launcher, error) {
	if api == nil {
		return nil, errors.New("ec2launcher: nil EC2 client")
	}
	if opts.AMI == "" {
		return nil, hint.Wrap(errors.New("ec2launcher: no worker AMI configured"),
			"build the worker AMI with deploy/aws/packer and set worker_ami_id")
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = "seren-replication-worker"
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 4
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = time.Second
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 20 * time.Second
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Launcher{api: api, opts: opts}, nil
}

// NewFromConfig builds the EC2 client from cfg (config.LoadDefaultConfig,
// so AWS_ENDPOINT_URL_EC2 is honoured).
func NewFromConfig(cfg aws.Config, opts Options) (*Launcher, error) {
	return New(ec2.NewFromConfig(cfg), opts)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// InstanceFor returns the size band and instance type a job of this
// estimated size gets, overrides applied.
func (l *Launcher) InstanceFor(estimatedBytes int64) Band {
	return l.opts.instanceFor(estimatedBytes)
}

// transient lists the codes worth retrying: capacity and throttling.
func transient(code string) bool {
	switch code {
	case "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
		"RequestLimitExceeded", "Throttling", "ThrottlingException",
		"Unavailable", "ServiceUnavailable", "InternalError", "InternalFailure":
		return true
	}
	return false
}

// spotUnavailable lists the codes after which on-demand is tried instead:
// no spot capacity, and no spot at all because the account lacks the
// AWSServiceRoleForEC2Spot service-linked role and the caller may not
// create it (Terraform's create_spot_service_linked_role).
func spotUnavailable(code string) bool {
	switch code {
	case "InsufficientInstanceCapacity", "InsufficientCapacity", "MaxSpotInstanceCountExceeded",
		"SpotMaxPriceTooLow", "UnfulfillableCapacity", "SpotCapacityNotAvailable",
		"AuthFailure.ServiceLinkedRoleCreationNotPermitted":
		return true
	}
	return false
}

// ErrorCode returns the AWS error code inside err ("" if none).
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func validJobID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("invalid job id %q", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("invalid job id %q", id)
		}
	}
	return nil
}

// UserData is the user data a job's worker is launched with, base64 as
// RunInstances takes it: the job id alone.
func UserData(jobID string) string { return base64.StdEncoding.EncodeToString([]byte(jobID)) }

func (l *Launcher) input(r launcher.Request, instanceType string, spot bool, token string) *ec2.RunInstancesInput {
	tags := []types.Tag{
		{Key: aws.String(TagName), Value: aws.String(l.opts.NamePrefix + "-" + r.JobID)},
		{Key: aws.String(TagJobID), Value: aws.String(r.JobID)},
		{Key: aws.String(TagManagedBy), Value: aws.String(ManagedBy)},
	}
	if r.TraceID != "" {
		tags = append(tags, types.Tag{Key: aws.String(TagTraceID), Value: aws.String(r.TraceID)})
	}
	if l.opts.Deployment != "" {
		tags = append(tags, types.Tag{Key: aws.String(TagDeployment), Value: aws.String(l.opts.Deployment)})
	}
	in := &ec2.RunInstancesInput{
		ImageId:                           aws.String(l.opts.AMI),
		InstanceType:                      types.InstanceType(instanceType),
		MinCount:                          aws.Int32(1),
		MaxCount:                          aws.Int32(1),
		UserData:                          aws.String(UserData(r.JobID)),
		InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens:              types.HttpTokensStateRequired,
			HttpEndpoint:            types.InstanceMetadataEndpointStateEnabled,
			HttpPutResponseHopLimit: aws.Int32(1),
		},
		ClientToken: aws.String(token),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tags},
			{ResourceType: types.ResourceTypeVolume, Tags: tags},
		},
	}
	if p := l.opts.InstanceProfile; p != "" {
		if strings.HasPrefix(p, "arn:") {
			in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Arn: aws.String(p)}
		} else {
			in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String(p)}
		}
	}
	if l.opts.SubnetID != "" {
		in.SubnetId = aws.String(l.opts.SubnetID)
	}
	if len(l.opts.SecurityGroupIDs) > 0 {
		in.SecurityGroupIds = l.opts.SecurityGroupIDs
	}
	if spot {
		so := &types.SpotMarketOptions{
			SpotInstanceType:             types.SpotInstanceTypeOneTime,
			InstanceInterruptionBehavior: types.InstanceInterruptionBehaviorTerminate,
		}
		if l.opts.SpotMaxPrice != "" {
			so.MaxPrice = aws.String(l.opts.SpotMaxPrice)
		}
		in.InstanceMarketOptions = &types.InstanceMarketOptionsRequest{MarketType: types.MarketTypeSpot, SpotOptions: so}
	}
	return in
}

func newToken(jobID string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	t := jobID + "-" + hex.EncodeToString(b[:])
	if len(t) > 60 { // ClientToken: at most 64 ASCII characters
		t = t[len(t)-60:]
	}
	return t
}

// Launch starts one instance for the job.
func (l *Launcher) Launch(ctx context.Context, r launcher.Request) (launcher.Worker, error) {
	if err := validJobID(r.JobID); err != nil {
		return launcher.Worker{}, fmt.Errorf("launch worker: %w", err)
	}
	band := l.opts.instanceFor(r.EstimatedSizeBytes)
	spot := l.opts.Spot
	base := newToken(r.JobID)

	var last error
	for attempt := 1; attempt <= l.opts.MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := l.opts.Sleep(ctx, l.backoff(attempt-1)); err != nil {
				return launcher.Worker{}, fmt.Errorf("launch worker for job %s: %w (last error: %w)", r.JobID, err, last)
			}
		}
		out, err := l.run(ctx, r, band.InstanceType, spot, fmt.Sprintf("%s-%d", base, attempt))
		if err != nil && spot && spotUnavailable(ErrorCode(err)) {
			// No spot capacity: on demand now, and for the later attempts.
			spot = false
			out, err = l.run(ctx, r, band.InstanceType, false, fmt.Sprintf("%s-%do", base, attempt))
		}
		if err == nil {
			return l.worker(r.JobID, band.InstanceType, out)
		}
		last = err
		if !transient(ErrorCode(err)) {
			return launcher.Worker{}, classify(err, l.opts)
		}
	}
	return launcher.Worker{}, fmt.Errorf("launch %s worker for job %s: %d attempts: %w: %w",
		band.InstanceType, r.JobID, l.opts.MaxAttempts, launcher.ErrCapacity, last)
}

func (l *Launcher) run(ctx context.Context, r launcher.Request, instanceType string, spot bool, token string) (*ec2.RunInstancesOutput, error) {
	out, err := l.api.RunInstances(ctx, l.input(r, instanceType, spot, token))
	if err != nil {
		market := "on-demand"
		if spot {
			market = "spot"
		}
		return nil, fmt.Errorf("ec2 RunInstances (%s %s) for job %s: %w", market, instanceType, r.JobID, err)
	}
	return out, nil
}

func (l *Launcher) worker(jobID, instanceType string, out *ec2.RunInstancesOutput) (launcher.Worker, error) {
	if out == nil || len(out.Instances) == 0 || out.Instances[0].InstanceId == nil {
		return launcher.Worker{}, fmt.Errorf("ec2 RunInstances for job %s returned no instance", jobID)
	}
	inst := out.Instances[0]
	w := launcher.Worker{
		ID:           aws.ToString(inst.InstanceId),
		JobID:        jobID,
		InstanceType: instanceType,
		LaunchedAt:   l.opts.Now(),
		Running:      true,
	}
	if inst.LaunchTime != nil {
		w.LaunchedAt = *inst.LaunchTime
	}
	if inst.InstanceType != "" {
		w.InstanceType = string(inst.InstanceType)
	}
	return w, nil
}

// backoff is full-jitter exponential: a random delay in [d/2, d] with
// d = BaseDelay·2^(n-1), capped at MaxDelay.
func (l *Launcher) backoff(n int) time.Duration {
	d := l.opts.BaseDelay << min(n-1, 20)
	if d > l.opts.MaxDelay || d <= 0 {
		d = l.opts.MaxDelay
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

func classify(err error, o Options) error {
	code := ErrorCode(err)
	switch {
	case strings.HasPrefix(code, "InvalidAMIID"):
		return hint.Wrap(err, fmt.Sprintf("check worker_ami_id %s exists in this region (rebuild it with deploy/aws/packer)", o.AMI))
	case code == "UnauthorizedOperation" || code == "AccessDenied" || code == "AccessDeniedException":
		return hint.Wrap(err, "grant ec2:RunInstances, ec2:CreateTags and iam:PassRole (for the worker instance profile) to the provisioner role")
	case strings.HasPrefix(code, "InvalidParameterValue") && strings.Contains(err.Error(), "iamInstanceProfile"),
		code == "InvalidInstanceProfile":
		return hint.Wrap(err, fmt.Sprintf("check the worker instance profile %q exists", o.InstanceProfile))
	case strings.HasPrefix(code, "InvalidSubnet"), strings.HasPrefix(code, "InvalidGroup"):
		return hint.Wrap(err, "check the worker subnet and security group ids in the configuration")
	case code == "VcpuLimitExceeded" || code == "InstanceLimitExceeded":
		return hint.Wrap(err, "request a higher EC2 vCPU quota, or lower max_concurrent_jobs")
	}
	return err
}

// List returns the managed workers that are not terminated.
func (l *Launcher) List(ctx context.Context) ([]launcher.Worker, error) {
	filters := []types.Filter{
		{Name: aws.String("tag:" + TagManagedBy), Values: []string{ManagedBy}},
		// Everything not (being) terminated: a stopped worker still costs.
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
	}
	if l.opts.Deployment != "" {
		filters = append(filters, types.Filter{Name: aws.String("tag:" + TagDeployment), Values: []string{l.opts.Deployment}})
	}
	var out []launcher.Worker
	p := ec2.NewDescribeInstancesPaginator(l.api, &ec2.DescribeInstancesInput{Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ec2 DescribeInstances (workers tagged %s=%s): %w", TagManagedBy, ManagedBy, err)
		}
		for _, res := range page.Reservations {
			for _, inst := range res.Instances {
				w := launcher.Worker{ID: aws.ToString(inst.InstanceId), InstanceType: string(inst.InstanceType)}
				for _, t := range inst.Tags {
					if aws.ToString(t.Key) == TagJobID {
						w.JobID = aws.ToString(t.Value)
					}
				}
				if inst.LaunchTime != nil {
					w.LaunchedAt = *inst.LaunchTime
				}
				if inst.State != nil {
					s := inst.State.Name
					w.Running = s == types.InstanceStateNamePending || s == types.InstanceStateNameRunning
				}
				out = append(out, w)
			}
		}
	}
	return out, nil
}

// Stop terminates a worker's instance; one that is already gone is not an
// error. It refuses an instance that is not a managed worker (of this
// deployment): a bad id in a job record must not end someone else's
// server.
func (l *Launcher) Stop(ctx context.Context, workerID string) error {
	if !strings.HasPrefix(workerID, "i-") {
		return fmt.Errorf("stop worker: %q is not an EC2 instance id", workerID)
	}
	desc, err := l.api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{workerID}})
	if err != nil {
		if ErrorCode(err) == "InvalidInstanceID.NotFound" {
			return nil
		}
		return fmt.Errorf("ec2 DescribeInstances %s: %w", workerID, err)
	}
	found := false
	for _, res := range desc.Reservations {
		for _, inst := range res.Instances {
			found = true
			tags := map[string]string{}
			for _, t := range inst.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			if tags[TagManagedBy] != ManagedBy || (l.opts.Deployment != "" && tags[TagDeployment] != l.opts.Deployment) {
				return fmt.Errorf("stop worker: instance %s is not a %s worker of this deployment; not terminating it", workerID, ManagedBy)
			}
			if inst.State != nil && inst.State.Name == types.InstanceStateNameTerminated {
				return nil
			}
		}
	}
	if !found {
		return nil
	}
	_, err = l.api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{workerID}})
	if err != nil {
		if ErrorCode(err) == "InvalidInstanceID.NotFound" {
			return nil
		}
		return fmt.Errorf("ec2 TerminateInstances %s: %w", workerID, err)
	}
	return nil
}

// SpotInterruptionCode is the state reason of an instance EC2 reclaimed
// (a spot interruption).
const SpotInterruptionCode = "Server.SpotInstanceTermination"

// Interrupted reports whether the worker's instance was ended by a spot
// interruption (EC2 reclaimed it) rather than by its job or a failure: the
// job then deserves another worker, which resumes from its checkpoint. An
// instance EC2 no longer knows is not interrupted as far as it can tell.
func (l *Launcher) Interrupted(ctx context.Context, workerID string) (bool, error) {
	if !strings.HasPrefix(workerID, "i-") {
		return false, nil
	}
	out, err := l.api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{workerID}})
	if err != nil {
		if ErrorCode(err) == "InvalidInstanceID.NotFound" {
			return false, nil
		}
		return false, fmt.Errorf("ec2 DescribeInstances %s: %w", workerID, err)
	}
	for _, res := range out.Reservations {
		for _, inst := range res.Instances {
			if inst.StateReason != nil && aws.ToString(inst.StateReason.Code) == SpotInterruptionCode {
				return true, nil
			}
		}
	}
	return false, nil
}
