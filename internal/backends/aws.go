package backends

// The aws backend: DynamoDB job store, SQS provisioning queue, KMS envelope
// secrets, SSM API keys, CloudWatch Logs job log, CloudWatch metrics, EC2
// worker launcher, and on a worker instance the instance itself. Every
// setting comes from the SEREN_* variables deploy/aws/terraform hands to
// the Lambdas (main.tf: common_env, coordinator_env, provisioner_env,
// reaper_env) and the worker AMI bakes into /etc/seren-worker.env
// (worker_env); the AWS SDK's own variables (AWS_REGION, credentials,
// AWS_ENDPOINT_URL_<SERVICE>) are read by the SDK.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys/ssmkeys"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/cwlog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/dynamostore"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher/ec2launcher"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqsqueue"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/kmskeys"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry/cwtelemetry"
)

// Environment variables of the aws backend. The first group is what
// deploy/aws/terraform sets; the last group is for tests and local runs
// against emulators, and for operators (Deployment, NoShutdownFile).
const (
	EnvAWSRegion                   = "SEREN_AWS_REGION" // else AWS_REGION (the SDK's chain)
	EnvJobsTable                   = "SEREN_JOBS_TABLE"
	EnvQueueURL                    = "SEREN_QUEUE_URL"
	EnvKMSKeyID                    = "SEREN_KMS_KEY_ID"
	EnvAPIKeyParam                 = "SEREN_API_KEY_PARAM"
	EnvLogGroup                    = "SEREN_LOG_GROUP"
	EnvMetricsNamespace            = "SEREN_METRICS_NAMESPACE"
	EnvWorkerAMI                   = "SEREN_WORKER_AMI"
	EnvWorkerSecurityGroupID       = "SEREN_WORKER_SECURITY_GROUP_ID"
	EnvWorkerInstanceProfile       = "SEREN_WORKER_INSTANCE_PROFILE"
	EnvWorkerSubnetID              = "SEREN_WORKER_SUBNET_ID"
	EnvWorkerInstanceType          = "SEREN_WORKER_INSTANCE_TYPE"
	EnvWorkerSpot                  = "SEREN_WORKER_SPOT"
	EnvDeployment                  = "SEREN_DEPLOYMENT"
	EnvWorkerInstanceID            = "SEREN_WORKER_INSTANCE_ID"
	EnvCloudWatchProtocol          = "SEREN_CLOUDWATCH_PROTOCOL"
	EnvWorkerNoShutdownFile        = "SEREN_WORKER_NO_SHUTDOWN_FILE"
	DefaultWorkerNoShutdownFile    = "/etc/seren-worker/no-shutdown"
	defaultInstanceIdentityTimeout = 10 * time.Second
)

// AWSConfig configures the aws backend. FromEnv reads it from the SEREN_*
// variables above; a field left empty there keeps what the caller set.
type AWSConfig struct {
	// Region overrides the SDK's region (AWS_REGION, which Lambda sets).
	Region string
	// JobsTable is the DynamoDB table (PartStore).
	JobsTable string
	// QueueURL is the provisioning queue (PartQueue).
	QueueURL string
	// KMSKeyID is the credentials key, id or alias (PartKeeper).
	KMSKeyID string
	// APIKeyParam is the SSM SecureString parameter holding the API key;
	// keys under APIKeyParam+"s/" are valid too (PartKeys).
	APIKeyParam string
	// LogGroup is the worker log group (PartLogs; default
	// cwlog.DefaultGroup).
	LogGroup string
	// MetricsNamespace is the CloudWatch namespace (PartMetrics; default
	// cwtelemetry.Namespace).
	MetricsNamespace string

	// The worker launch (PartLauncher). Without WorkerAMI the launcher can
	// list and stop workers but not launch one (the coordinator and the
	// reaper have no AMI; only the provisioner launches).
	WorkerAMI             string
	WorkerSecurityGroupID string
	WorkerInstanceProfile string
	WorkerSubnetID        string
	WorkerInstanceType    string
	// WorkerSpot is "true" or "false" (Terraform's tostring(bool)).
	WorkerSpot string
	// Deployment, when set, tags launched workers SerenDeployment=<it> and
	// makes listing and stopping see only them (several deployments in
	// one account). Terraform does not set it: all workers of the account
	// tagged ManagedBy=seren-replication-system are this deployment's.
	Deployment string

	// InstanceID is the worker's own instance id (PartSelf). Empty: read
	// from the instance metadata service (IMDSv2). Set it only where no
	// IMDS exists (tests against emulators).
	InstanceID string
	// NoShutdownFile: while it exists the worker does not terminate its
	// instance when the job ends (debugging; the packer unit's stop script
	// honours the same file). Default DefaultWorkerNoShutdownFile.
	NoShutdownFile string
	// CloudWatchProtocol switches the CloudWatch client's wire protocol
	// for emulators ("awsjson" for moto); empty against AWS.
	CloudWatchProtocol string
}

func (a AWSConfig) fromEnv() AWSConfig {
	set := func(dst *string, name string) {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			*dst = v
		}
	}
	set(&a.Region, EnvAWSRegion)
	set(&a.JobsTable, EnvJobsTable)
	set(&a.QueueURL, EnvQueueURL)
	set(&a.KMSKeyID, EnvKMSKeyID)
	set(&a.APIKeyParam, EnvAPIKeyParam)
	set(&a.LogGroup, EnvLogGroup)
	set(&a.MetricsNamespace, EnvMetricsNamespace)
	set(&a.WorkerAMI, EnvWorkerAMI)
	set(&a.WorkerSecurityGroupID, EnvWorkerSecurityGroupID)
	set(&a.WorkerInstanceProfile, EnvWorkerInstanceProfile)
	set(&a.WorkerSubnetID, EnvWorkerSubnetID)
	set(&a.WorkerInstanceType, EnvWorkerInstanceType)
	set(&a.WorkerSpot, EnvWorkerSpot)
	set(&a.Deployment, EnvDeployment)
	set(&a.InstanceID, EnvWorkerInstanceID)
	set(&a.NoShutdownFile, EnvWorkerNoShutdownFile)
	set(&a.CloudWatchProtocol, EnvCloudWatchProtocol)
	return a
}

// need returns a hinted error when a setting a part needs is empty.
func need(value, env, what string) error {
	if value != "" {
		return nil
	}
	return hint.Wrap(fmt.Errorf("aws backend: no %s configured", what),
		"set "+env+" (deploy/aws/terraform sets it for the Lambdas; the worker AMI has it in /etc/seren-worker.env)")
}

// openAWS opens the parts of the aws backend.
func openAWS(ctx context.Context, c Config, parts Parts) (s *Set, err error) {
	a := c.AWS
	var opts []func(*config.LoadOptions) error
	if a.Region != "" {
		opts = append(opts, config.WithRegion(a.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, hint.Wrap(errors.New("aws backend: no AWS region"), "set AWS_REGION (or "+EnvAWSRegion+")")
	}

	s = &Set{Backend: AWS}
	opened := s // `return nil, err` sets s to nil before this runs
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()

	if parts&PartSelf != 0 {
		if s.Self, err = openSelf(ctx, cfg, a); err != nil {
			return nil, err
		}
	}
	if parts&PartStore != 0 {
		if err := need(a.JobsTable, EnvJobsTable, "DynamoDB jobs table"); err != nil {
			return nil, err
		}
		d, err := dynamostore.NewFromConfig(cfg, a.JobsTable, dynamostore.Options{Now: c.Now})
		if err != nil {
			return nil, err
		}
		s.Store = jobstore.New(d, c.Now)
		s.closers = append(s.closers, s.Store.Close)
	}
	if parts&PartQueue != 0 {
		if err := need(a.QueueURL, EnvQueueURL, "SQS provisioning queue URL"); err != nil {
			return nil, err
		}
		q, err := sqsqueue.NewFromConfig(cfg, a.QueueURL)
		if err != nil {
			return nil, err
		}
		s.Queue = q
		s.closers = append(s.closers, q.Close)
	}
	if parts&PartKeeper != 0 {
		if err := need(a.KMSKeyID, EnvKMSKeyID, "KMS credentials key"); err != nil {
			return nil, err
		}
		w, err := kmskeys.NewFromConfig(cfg, a.KMSKeyID)
		if err != nil {
			return nil, err
		}
		s.Keeper = secrets.NewKeeper(w)
		s.closers = append(s.closers, s.Keeper.Close)
	}
	if parts&PartKeys != 0 {
		if err := need(a.APIKeyParam, EnvAPIKeyParam, "SSM API key parameter"); err != nil {
			return nil, err
		}
		v, err := ssmkeys.NewFromConfig(cfg, ssmkeys.Options{Param: a.APIKeyParam, Now: c.Now})
		if err != nil {
			return nil, err
		}
		s.Keys = v
	}
	if parts&PartKeyManager != 0 {
		param := a.APIKeyParam
		if param == "" {
			param = "/seren-replication/api-key"
		}
		return nil, hint.Wrap(errors.New("API keys of the aws backend are SSM parameters; this command manages the embedded backend's keys"),
			fmt.Sprintf("add a key with: aws ssm put-parameter --type SecureString --name %ss/<name> --value \"$(openssl rand -hex 32)\"; remove it with aws ssm delete-parameter (the API picks changes up within a minute)", param))
	}
	if parts&PartLogs != 0 {
		lo := cwlog.Options{Group: a.LogGroup, Region: cfg.Region}
		if s.Self != nil {
			lo.Stream = s.Self.InstanceID // streams <job id>/<instance id>
		}
		l, err := cwlog.NewFromConfig(cfg, lo)
		if err != nil {
			return nil, err
		}
		s.Logs = l
	}
	if parts&PartMetrics != 0 {
		client, err := cwtelemetry.NewClient(cfg, a.CloudWatchProtocol)
		if err != nil {
			return nil, hint.Wrap(err, "unset "+EnvCloudWatchProtocol+" against AWS; it is for emulators")
		}
		r := cwtelemetry.New(client, cwtelemetry.Options{Namespace: a.MetricsNamespace, Now: c.Now})
		s.Metrics = r
		s.flushers = append(s.flushers, r.Flush)
		s.closers = append(s.closers, func() error {
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return r.Flush(fctx)
		})
	}
	if parts&PartLauncher != 0 {
		if s.Launcher, err = openEC2Launcher(cfg, c, a); err != nil {
			return nil, err
		}
	}
	if s.Self != nil && s.Store != nil {
		if r, ok := s.Metrics.(*cwtelemetry.Recorder); ok {
			// The worker records ProvisioningDuration, launch to running,
			// when it starts its job.
			launched := instanceBootTime(c.Now)
			s.Store = s.Store.WithDriver(func(d jobstore.Driver) jobstore.Driver {
				return startedDriver{Driver: d, started: func(j *jobs.Job) {
					if !launched.IsZero() && j.StartedAt != nil && j.StartedAt.After(launched) {
						r.WorkerStarted(j.InstanceType, j.StartedAt.Sub(launched))
					}
				}}
			})
		}
	}
	return s, nil
}

// startedDriver calls started when a job moves to running for the first
// time (the Started transition sets StartedAt to the write's time).
type startedDriver struct {
	jobstore.Driver
	started func(*jobs.Job)
}

func (d startedDriver) Put(ctx context.Context, j *jobs.Job, expect jobstore.Expect) error {
	if err := d.Driver.Put(ctx, j, expect); err != nil {
		return err
	}
	if j.Status == jobs.StatusRunning && j.StartedAt != nil && j.StartedAt.Equal(j.UpdatedAt) {
		d.started(j)
	}
	return nil
}

// instanceBootTime is when this machine booted (/proc/uptime): on a worker
// instance, its launch within seconds. Zero when unknown.
func instanceBootTime(now func() time.Time) time.Time {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil || up <= 0 {
		return time.Time{}
	}
	if now == nil {
		now = time.Now
	}
	return now().Add(-time.Duration(up * float64(time.Second)))
}

func openEC2Launcher(cfg aws.Config, c Config, a AWSConfig) (launcher.Launcher, error) {
	spot := false
	if a.WorkerSpot != "" {
		v, err := strconv.ParseBool(a.WorkerSpot)
		if err != nil {
			return nil, hint.Wrap(fmt.Errorf("%s=%q is not a boolean", EnvWorkerSpot, a.WorkerSpot), "set it to true or false")
		}
		spot = v
	}
	o := ec2launcher.Options{
		AMI:             a.WorkerAMI,
		InstanceProfile: a.WorkerInstanceProfile,
		SubnetID:        a.WorkerSubnetID,
		InstanceType:    a.WorkerInstanceType,
		Spot:            spot,
		Deployment:      a.Deployment,
		Now:             c.Now,
	}
	if a.WorkerSecurityGroupID != "" {
		o.SecurityGroupIDs = []string{a.WorkerSecurityGroupID}
	}
	if o.AMI == "" {
		// Listing and stopping workers needs no image; launching does.
		o.AMI = "ami-none"
		l, err := ec2launcher.NewFromConfig(cfg, o)
		if err != nil {
			return nil, err
		}
		return stopOnly{l}, nil
	}
	return ec2launcher.NewFromConfig(cfg, o)
}

// stopOnly is the EC2 launcher of a process without a worker AMI: it lists
// and stops workers and refuses to launch one.
type stopOnly struct{ *ec2launcher.Launcher }

func (stopOnly) Launch(context.Context, launcher.Request) (launcher.Worker, error) {
	return launcher.Worker{}, need("", EnvWorkerAMI, "worker AMI (only the provisioner launches workers)")
}

// Flush sends whatever the backends buffer (CloudWatch metrics). A Lambda
// calls it before its handler returns (a frozen container sends nothing);
// a worker before it terminates its instance.
func (s *Set) Flush(ctx context.Context) error {
	var errs []error
	for _, f := range s.flushers {
		if err := f(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Self is a worker's own EC2 instance: its id names the worker (the job's
// worker_id, the log stream) and Terminate ends it when the job is over.
type Self struct {
	InstanceID string

	ec2        selfAPI
	noShutdown string
}

type selfAPI interface {
	TerminateInstances(ctx context.Context, in *ec2.TerminateInstancesInput, optFns ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
}

func openSelf(ctx context.Context, cfg aws.Config, a AWSConfig) (*Self, error) {
	id := a.InstanceID
	if id == "" {
		ictx, cancel := context.WithTimeout(ctx, defaultInstanceIdentityTimeout)
		defer cancel()
		out, err := imds.NewFromConfig(cfg).GetMetadata(ictx, &imds.GetMetadataInput{Path: "instance-id"})
		if err != nil {
			return nil, hint.Wrap(fmt.Errorf("read this worker's instance id from the instance metadata service: %w", err),
				"run the AWS worker on its EC2 instance (IMDSv2 reachable), or set "+EnvWorkerInstanceID+" where there is none")
		}
		b, err := io.ReadAll(io.LimitReader(out.Content, 256))
		out.Content.Close()
		if err != nil {
			return nil, fmt.Errorf("read this worker's instance id: %w", err)
		}
		id = strings.TrimSpace(string(b))
	}
	if !strings.HasPrefix(id, "i-") {
		return nil, fmt.Errorf("worker instance id %q is not an EC2 instance id", id)
	}
	f := a.NoShutdownFile
	if f == "" {
		f = DefaultWorkerNoShutdownFile
	}
	return &Self{InstanceID: id, ec2: ec2.NewFromConfig(cfg), noShutdown: f}, nil
}

// Terminate ends this instance (TerminateInstances on its own id): the
// worker's last act, whatever the job's outcome. While the no-shutdown
// file exists it does nothing and says so. skipped reports that case.
func (s *Self) Terminate(ctx context.Context) (skipped bool, err error) {
	if _, err := os.Stat(s.noShutdown); err == nil {
		return true, nil
	}
	if _, err := s.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{s.InstanceID}}); err != nil {
		return false, hint.Wrap(fmt.Errorf("terminate this worker's instance %s: %w", s.InstanceID, err),
			"the worker role needs ec2:TerminateInstances on its own instance (deploy/aws/terraform iam.tf); the unit's stop script powers the instance off instead")
	}
	return false, nil
}
