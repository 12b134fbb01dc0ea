package awslambda

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
)

// EnvMaxConcurrentJobs is the concurrent-job limit Terraform hands to the
// coordinator and the provisioner (max_concurrent_jobs).
const EnvMaxConcurrentJobs = "SEREN_MAX_CONCURRENT_JOBS"

// EnvRequestKey is the base64 key of the request fingerprints kept with
// idempotent submits (api.Config.RequestKey), the same for every API
// Lambda; optional (without it, a salted hash).
const EnvRequestKey = "SEREN_REQUEST_KEY"

// Defaults for Config.
const (
	// DefaultFollowTimeout ends a followed log response before the
	// coordinator's 29 s Lambda timeout (API Gateway gives up at 30 s).
	DefaultFollowTimeout = 25 * time.Second
	// DefaultCapacityRetryDelay is how long a job waits in the queue when
	// every worker slot is taken before the provisioner looks again.
	DefaultCapacityRetryDelay = 30 * time.Second
	// DefaultGoneGrace is how long after its launch (or last heartbeat) a
	// worker instance may be missing from DescribeInstances before the
	// reaper counts it gone: EC2's listing is eventually consistent.
	DefaultGoneGrace = 2 * time.Minute
	// flushTimeout bounds the metrics flush at the end of an invocation.
	flushTimeout = 5 * time.Second
)

// Config configures the three functions. FromEnv builds it from the
// environment deploy/aws/terraform gives them.
type Config struct {
	// Backends configures the aws backend (Backend must be backends.AWS).
	Backends backends.Config
	// MaxConcurrentJobs is the limit of jobs provisioning or running
	// (SEREN_MAX_CONCURRENT_JOBS; default service.DefaultMaxConcurrentJobs).
	MaxConcurrentJobs int

	// API: FollowTimeout ends a followed log response (default
	// DefaultFollowTimeout).
	FollowTimeout time.Duration
	// Version is what GET /health reports.
	Version string
	// RequestKey keys the API's request fingerprints (SEREN_REQUEST_KEY).
	RequestKey []byte

	// Provisioner: CapacityRetryDelay (default DefaultCapacityRetryDelay)
	// and LaunchRetryDelay (the service's default when 0).
	CapacityRetryDelay time.Duration
	LaunchRetryDelay   time.Duration

	// Reaper: the service's checker settings (service defaults when 0,
	// GoneGrace DefaultGoneGrace).
	HeartbeatTimeout  time.Duration
	GoneGrace         time.Duration
	ReapGrace         time.Duration
	DefaultJobTimeout time.Duration

	Logger *slog.Logger
	Now    func() time.Time
}

// FromEnv reads the configuration from the environment.
func FromEnv() (Config, error) {
	c := Config{Backends: backends.FromEnv(backends.Config{Backend: backendFromEnv()})}
	if v := strings.TrimSpace(os.Getenv(EnvMaxConcurrentJobs)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, hint.Wrap(fmt.Errorf("%s=%q is not a positive whole number", EnvMaxConcurrentJobs, v),
				"set it to the deployment's max_concurrent_jobs")
		}
		c.MaxConcurrentJobs = n
	}
	if v := strings.TrimSpace(os.Getenv(EnvRequestKey)); v != "" {
		k, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(k) < 16 {
			// Never echo the value: it is a secret.
			return c, hint.Wrap(fmt.Errorf("%s is not a base64 key of at least 16 bytes", EnvRequestKey),
				"generate one with: head -c 32 /dev/urandom | base64")
		}
		c.RequestKey = k
	}
	return c, nil
}

// backendFromEnv is SEREN_BACKEND, else aws: a Lambda has no other.
func backendFromEnv() string {
	if b := strings.ToLower(strings.TrimSpace(os.Getenv(backends.EnvBackend))); b != "" {
		return b
	}
	return backends.AWS
}

func (c *Config) defaults() error {
	if c.Backends.Backend == "" {
		c.Backends.Backend = backends.AWS
	}
	if c.Backends.Backend != backends.AWS {
		return hint.Wrap(fmt.Errorf("the Lambda functions run on the aws backend, not %q", c.Backends.Backend),
			"set "+backends.EnvBackend+"=aws (deploy/aws/terraform does)")
	}
	if c.Backends.AWS.Deployment == "" {
		// Without it, every environment in the account would count, list
		// and reap the others' workers as its own.
		return hint.Wrap(fmt.Errorf("no deployment name (%s)", backends.EnvDeployment),
			"set "+backends.EnvDeployment+" to this deployment's name (deploy/aws/terraform sets <project>-<environment>)")
	}
	if c.MaxConcurrentJobs <= 0 {
		c.MaxConcurrentJobs = service.DefaultMaxConcurrentJobs
	}
	if c.FollowTimeout <= 0 {
		c.FollowTimeout = DefaultFollowTimeout
	}
	if c.CapacityRetryDelay <= 0 {
		c.CapacityRetryDelay = DefaultCapacityRetryDelay
	}
	if c.GoneGrace <= 0 {
		c.GoneGrace = DefaultGoneGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewJSONHandler(os.Stdout, nil)) // Lambda ships stdout to its log group
	}
	c.Backends.Now = c.Now
	c.Backends.Logger = c.Logger
	return nil
}

func (c *Config) open(ctx context.Context, parts backends.Parts) (*backends.Set, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	set, err := backends.Open(ctx, c.Backends, parts)
	if err != nil {
		return nil, err
	}
	if set.Logs != nil {
		set.Logs = &noteLog{Log: set.Logs, log: c.Logger}
	}
	return set, nil
}

// finish ends an invocation: background worker stops done, buffered
// metrics sent. Its errors are logged, not returned: the invocation's own
// work is done by then.
func finish(ctx context.Context, svc *service.Service, set *backends.Set, log *slog.Logger) {
	if svc != nil {
		svc.Wait()
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	if err := set.Flush(fctx); err != nil {
		log.Warn("send metrics", "err", err)
	}
}

// noteLog is the job log as the Lambdas see it: reads and console links
// come from the worker log group (cwlog); the service's notes on a job
// (a launch that failed, a lost worker) go to the function's own log,
// because a Lambda has no stream in the worker group and no right to write
// there.
type noteLog struct {
	joblog.Log
	log *slog.Logger
}

func (n *noteLog) Append(ctx context.Context, jobID string, lines []joblog.Line) error {
	for _, l := range lines {
		n.log.InfoContext(ctx, l.Text, "job_id", jobID)
	}
	return nil
}
