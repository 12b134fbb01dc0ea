package backends

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/launcher"
)

// awsEnv isolates a test from the machine's AWS configuration.
func awsEnv(t *testing.T) {
	t.Helper()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	for _, v := range []string{EnvAWSRegion, EnvJobsTable, EnvQueueURL, EnvKMSKeyID, EnvAPIKeyParam, EnvLogGroup,
		EnvMetricsNamespace, EnvWorkerAMI, EnvWorkerSecurityGroupID, EnvWorkerInstanceProfile, EnvWorkerSubnetID,
		EnvWorkerInstanceType, EnvWorkerSpot, EnvDeployment, EnvWorkerInstanceID, EnvCloudWatchProtocol, EnvWorkerNoShutdownFile} {
		t.Setenv(v, "")
	}
}

// The variables deploy/aws/terraform (main.tf) sets, and where they land.
func TestAWSConfigFromTerraformEnvironment(t *testing.T) {
	awsEnv(t)
	env := map[string]string{
		"SEREN_BACKEND":                  "aws",
		"SEREN_JOBS_TABLE":               "replication-jobs",
		"SEREN_QUEUE_URL":                "https://sqs.us-east-1.amazonaws.com/123456789012/seren-replication-provisioning",
		"SEREN_METRICS_NAMESPACE":        "SerenReplication",
		"SEREN_LOG_GROUP":                "/aws/ec2/seren-replication-worker",
		"SEREN_KMS_KEY_ID":               "alias/seren-replication-credentials",
		"SEREN_API_KEY_PARAM":            "/seren-replication/api-key",
		"SEREN_WORKER_AMI":               "ami-0123456789abcdef0",
		"SEREN_WORKER_SECURITY_GROUP_ID": "sg-0123",
		"SEREN_WORKER_INSTANCE_PROFILE":  "seren-replication-worker",
		"SEREN_WORKER_SPOT":              "true",
		"SEREN_WORKER_SUBNET_ID":         "subnet-0123",
		"SEREN_WORKER_INSTANCE_TYPE":     "c5.xlarge",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	c := FromEnv(Config{})
	want := AWSConfig{
		JobsTable: "replication-jobs", QueueURL: env["SEREN_QUEUE_URL"], MetricsNamespace: "SerenReplication",
		LogGroup: "/aws/ec2/seren-replication-worker", KMSKeyID: "alias/seren-replication-credentials",
		APIKeyParam: "/seren-replication/api-key", WorkerAMI: "ami-0123456789abcdef0", WorkerSecurityGroupID: "sg-0123",
		WorkerInstanceProfile: "seren-replication-worker", WorkerSpot: "true", WorkerSubnetID: "subnet-0123",
		WorkerInstanceType: "c5.xlarge",
	}
	if c.Backend != AWS || c.AWS != want {
		t.Fatalf("FromEnv:\n got %+v\nwant %+v", c.AWS, want)
	}
	// Settings given by the caller stay when the environment has none.
	t.Setenv(EnvJobsTable, "")
	if c := FromEnv(Config{AWS: AWSConfig{JobsTable: "mine"}}); c.AWS.JobsTable != "mine" {
		t.Errorf("caller's table replaced: %q", c.AWS.JobsTable)
	}
}

func TestOpenAWSExplainsMissingSettings(t *testing.T) {
	awsEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		parts Parts
		aws   AWSConfig
		want  string // in the hint
	}{
		{"store", PartStore, AWSConfig{}, EnvJobsTable},
		{"queue", PartQueue, AWSConfig{}, EnvQueueURL},
		{"keeper", PartKeeper, AWSConfig{}, EnvKMSKeyID},
		{"keys", PartKeys, AWSConfig{}, EnvAPIKeyParam},
		{"key manager", PartKeyManager, AWSConfig{APIKeyParam: "/p/api-key"}, "aws ssm put-parameter --type SecureString --name /p/api-keys/"},
		{"spot", PartLauncher, AWSConfig{WorkerAMI: "ami-1", WorkerSpot: "maybe"}, "true or false"},
		{"protocol", PartMetrics, AWSConfig{CloudWatchProtocol: "carrier-pigeon"}, EnvCloudWatchProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(ctx, Config{Backend: AWS, AWS: tc.aws}, tc.parts)
			if err == nil || !strings.Contains(hint.Of(err), tc.want) {
				t.Fatalf("err %v, hint %q; want a hint naming %q", err, hint.Of(err), tc.want)
			}
		})
	}

	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	if _, err := Open(ctx, Config{Backend: AWS}, PartStore); err == nil || !strings.Contains(hint.Of(err), "AWS_REGION") {
		t.Errorf("no region: %v (hint %q)", err, hint.Of(err))
	}
}

func TestOpenAWSParts(t *testing.T) {
	awsEnv(t)
	ctx := context.Background()
	a := AWSConfig{JobsTable: "t", QueueURL: "http://127.0.0.1:1/q", KMSKeyID: "alias/k", APIKeyParam: "/p/api-key"}
	s, err := Open(ctx, Config{Backend: AWS, AWS: a}, ForServe)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Store == nil || s.Queue == nil || s.Keeper == nil || s.Keys == nil || s.Logs == nil || s.Metrics == nil || s.Launcher == nil {
		t.Fatalf("ForServe left parts nil: %+v", s)
	}
	if s.Self != nil {
		t.Error("Self opened without PartSelf")
	}
	// Without a worker AMI the launcher stops workers but launches none.
	_, err = s.Launcher.Launch(ctx, launcher.Request{JobID: "j"})
	if err == nil || !strings.Contains(hint.Of(err), EnvWorkerAMI) {
		t.Errorf("launch without AMI: %v (hint %q)", err, hint.Of(err))
	}
	if u := s.Logs.URL("job-1", "i-0abc"); !strings.Contains(u, "region=us-east-1") || !strings.Contains(u, "i-0abc") {
		t.Errorf("log URL %q", u)
	}
}

func TestAWSWorkerSelf(t *testing.T) {
	awsEnv(t)
	ctx := context.Background()
	if _, err := Open(ctx, Config{Backend: AWS, AWS: AWSConfig{InstanceID: "not-an-instance"}}, PartSelf); err == nil {
		t.Error("a bad instance id was accepted")
	}
	// Without IMDS and without the override there is no identity.
	if _, err := Open(ctx, Config{Backend: AWS}, PartSelf); err == nil || !strings.Contains(hint.Of(err), EnvWorkerInstanceID) {
		t.Errorf("no IMDS: %v (hint %q)", err, hint.Of(err))
	}

	keep := filepath.Join(t.TempDir(), "no-shutdown")
	s, err := Open(ctx, Config{Backend: AWS, AWS: AWSConfig{InstanceID: "i-0123456789abcdef0", NoShutdownFile: keep}}, PartSelf)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Self == nil || s.Self.InstanceID != "i-0123456789abcdef0" {
		t.Fatalf("Self %+v", s.Self)
	}
	if err := os.WriteFile(keep, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The debugging switch: no EC2 call at all (there is no endpoint).
	if skipped, err := s.Self.Terminate(ctx); !skipped || err != nil {
		t.Errorf("Terminate with the no-shutdown file: skipped %v err %v", skipped, err)
	}
	// The embedded backend has no machine to terminate.
	if e, err := Open(ctx, Config{Backend: Embedded, DataDir: t.TempDir()}, PartSelf); err != nil || e.Self != nil {
		t.Errorf("embedded PartSelf: %v %+v", err, e)
	} else {
		e.Close()
	}
}
