// Package awstest connects tests to the local AWS emulators that
// scripts/emulators.sh starts (dynalite, fauxqs, local-kms, moto). It never
// talks to real AWS: every endpoint must be a loopback address.
//
// When an emulator's endpoint variable is missing, the test skips locally
// and fails under CI=true, so a CI run can never go green by skipping.
// The one exception is SEREN_AWS_TESTS=elsewhere, which scripts/test.sh
// sets for its plain `go test ./...` step because scripts/test-aws.sh runs
// these packages right after against the emulators (and fails there on any
// skip).
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// The endpoint variables scripts/emulators.sh exports, one per service.
const (
	DynamoDB       = "AWS_ENDPOINT_URL_DYNAMODB"
	SQS            = "AWS_ENDPOINT_URL_SQS"
	KMS            = "AWS_ENDPOINT_URL_KMS"
	SSM            = "AWS_ENDPOINT_URL_SSM"
	EC2            = "AWS_ENDPOINT_URL_EC2"
	CloudWatch     = "AWS_ENDPOINT_URL_CLOUDWATCH"
	CloudWatchLogs = "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"
	// MotoIAM is a second moto server started with IAM enforcement on
	// (INITIAL_NO_AUTH_ACTION_COUNT): the IAM tests' endpoint for SSM, EC2,
	// CloudWatch and Logs. MotoIAMNoAuthVar holds its count.
	MotoIAM = "SEREN_TEST_MOTO_IAM_ENDPOINT"
)

// MotoIAMNoAuthVar names the variable holding the enforcing moto's
// INITIAL_NO_AUTH_ACTION_COUNT (the unsigned actions it answers first).
const MotoIAMNoAuthVar = "SEREN_TEST_MOTO_IAM_NO_AUTH"

// KMSKeyVar names the variable holding the seeded KMS key alias.
const KMSKeyVar = "SEREN_TEST_KMS_KEY_ID"

// CloudWatchProtocolVar names the variable that switches the CloudWatch
// client's wire protocol for moto (see telemetry/cwtelemetry).
const CloudWatchProtocolVar = "SEREN_CLOUDWATCH_PROTOCOL"

// InCI reports whether the tests run in CI (CI=true), where a missing
// emulator is a failure, not a skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Require skips the test (or fails it in CI) unless every named endpoint
// variable is set to a loopback URL.
func Require(t testing.TB, endpointVars ...string) {
	t.Helper()
	for _, v := range append([]string{"AWS_ACCESS_KEY_ID"}, endpointVars...) {
		val := os.Getenv(v)
		if val == "" {
			missing(t, v+" is not set; run the AWS tests through scripts/test-aws.sh (it starts the emulators)")
			return
		}
		if v == "AWS_ACCESS_KEY_ID" {
			continue
		}
		u, err := url.Parse(val)
		if err != nil || !isLoopback(u.Hostname()) {
			t.Fatalf("%s=%q is not a loopback emulator endpoint; refusing to run tests against it", v, val)
		}
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ElsewhereVar, set to "elsewhere", makes a missing emulator a skip even
// in CI: the run that sets it leaves the AWS suites to scripts/test-aws.sh.
const ElsewhereVar = "SEREN_AWS_TESTS"

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(ElsewhereVar) == "elsewhere" {
		t.Skip(msg + " (" + ElsewhereVar + "=elsewhere: scripts/test-aws.sh runs this)")
	}
	if InCI() {
		t.Fatal(msg + " (CI=true: a missing emulator fails the run)")
	}
	t.Skip(msg)
}

// Config returns an aws.Config built by config.LoadDefaultConfig, so the
// AWS_ENDPOINT_URL_* variables take effect exactly as in production code.
// It requires the named endpoint variables first (see Require).
func Config(t testing.TB, endpointVars ...string) aws.Config {
	t.Helper()
	Require(t, endpointVars...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		t.Fatalf("load AWS config: %v", err)
	}
	return cfg
}

// RIEVar names the variable holding the path of aws-lambda-rie, the
// Lambda runtime interface emulator scripts/emulators.sh installs.
const RIEVar = "SEREN_TEST_RIE"

// RIE returns the runtime interface emulator's path. Like Require, it
// skips locally and fails in CI when it is missing.
func RIE(t testing.TB) string {
	t.Helper()
	p := os.Getenv(RIEVar)
	if p == "" {
		missing(t, RIEVar+" is not set; run the AWS tests through scripts/test-aws.sh (it installs the Lambda runtime interface emulator)")
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s=%s: %v", RIEVar, p, err)
	}
	return p
}

// KMSKeyID returns the key id or alias the emulator was seeded with.
func KMSKeyID(t testing.TB) string {
	t.Helper()
	k := os.Getenv(KMSKeyVar)
	if k == "" {
		missing(t, KMSKeyVar+" is not set; run the AWS tests through scripts/test-aws.sh")
	}
	return k
}

// Name returns a name unique to this test run, safe for tables, queues,
// log groups and parameters (letters, digits and '-', at most 64 chars):
// the emulators have no reset, so every test needs its own resources.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random name: %v", err)
	}
	base := strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name()), "-")
	suffix := "-" + hex.EncodeToString(b[:])
	max := 64 - len(prefix) - len(suffix) - 1
	if len(base) > max {
		base = base[len(base)-max:]
	}
	return prefix + "-" + strings.Trim(base, "-") + suffix
}
