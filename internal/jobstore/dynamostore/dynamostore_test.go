package dynamostore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"

	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/dynamostore"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore/jobstoretest"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

// newDriver returns a driver on a fresh table of its own.
func newDriver(t *testing.T) (*dynamostore.Driver, *dynamodb.Client, string) {
	t.Helper()
	cfg := awstest.Config(t, awstest.DynamoDB)
	client := dynamodb.NewFromConfig(cfg)
	table := awstest.Name(t, "jobs")
	if err := dynamostore.CreateTable(context.Background(), client, table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &table})
	})
	d, err := dynamostore.New(client, table, dynamostore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d, client, table
}

func TestConformance(t *testing.T) {
	jobstoretest.Run(t, func(t *testing.T) jobstore.Driver {
		d, _, _ := newDriver(t)
		return d
	}, jobstoretest.Options{ExpiresItself: true})
}

func rawItem(t *testing.T, client *dynamodb.Client, table, id string) map[string]types.AttributeValue {
	t.Helper()
	out, err := client.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(table), Key: map[string]types.AttributeValue{"job_id": &types.AttributeValueMemberS{Value: id}}, ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

func str(it map[string]types.AttributeValue, k string) string {
	if v, ok := it[k].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func num(it map[string]types.AttributeValue, k string) string {
	if v, ok := it[k].(*types.AttributeValueMemberN); ok {
		return v.Value
	}
	return ""
}

func TestItemLayout(t *testing.T) {
	d, client, table := newDriver(t)
	ctx := context.Background()
	created := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) // whole second: the fixed width must keep the zeros
	s := jobstore.New(d, func() time.Time { return created })
	sealed := []byte("\x01SEALED\x00blob-with-no-clear-text")
	j, err := s.Create(ctx, &jobs.Job{Owner: "key_abc", IdempotencyKey: "retry-1", Credentials: sealed,
		Spec: jobs.Spec{Command: jobs.CommandInit}})
	if err != nil {
		t.Fatal(err)
	}

	it := rawItem(t, client, table, j.ID)
	for k, want := range map[string]string{
		"owner":       "key_abc",
		"created_at":  "2026-03-04T05:06:07.000000000Z",
		"active":      "1",
		"idempotency": "key_abc#retry-1",
		"status":      "provisioning",
		"command":     "init",
		"trace_id":    j.TraceID,
	} {
		if got := str(it, k); got != want {
			t.Errorf("attribute %s = %q, want %q", k, got, want)
		}
	}
	if got, want := num(it, "expires_at"), strconv.FormatInt(created.Add(jobs.Retention).Unix(), 10); got != want {
		t.Errorf("expires_at = %s, want %s (created + 30 days, epoch seconds)", got, want)
	}
	if got := num(it, "version"); got != "1" {
		t.Errorf("version = %s", got)
	}
	if b, ok := it["credentials"].(*types.AttributeValueMemberB); !ok || !bytes.Equal(b.Value, sealed) {
		t.Errorf("credentials attribute = %v", it["credentials"])
	}
	if strings.Contains(str(it, "doc"), "SEALED") {
		t.Error("the JSON doc holds the credentials blob")
	}

	// Terminal: out of the sparse active index, operator copies updated.
	if _, err := s.Apply(ctx, j.ID, jobs.Provisioned("i-0123", "c5.large", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, j.ID, jobs.Failed("no capacity")); err != nil {
		t.Fatal(err)
	}
	it = rawItem(t, client, table, j.ID)
	if _, ok := it["active"]; ok {
		t.Error("a failed job still has the active attribute")
	}
	if str(it, "status") != "failed" || str(it, "worker_id") != "i-0123" || str(it, "instance_type") != "c5.large" || str(it, "error") != "no capacity" || num(it, "version") != "3" {
		t.Errorf("after failure: %v", it)
	}
	out, err := client.Query(ctx, &dynamodb.QueryInput{
		TableName: aws.String(table), IndexName: aws.String(dynamostore.IndexActive),
		KeyConditionExpression:    aws.String("active = :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberS{Value: "1"}},
	})
	if err != nil || out.Count != 0 {
		t.Errorf("active-index holds %d items after the only job failed (err %v)", out.Count, err)
	}
}

func TestGuardItemsAreNotJobs(t *testing.T) {
	d, client, table := newDriver(t)
	ctx := context.Background()
	s := jobstore.New(d, nil)
	if _, err := s.Create(ctx, &jobs.Job{Owner: "o", IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	scan, err := client.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	var guard string
	for _, it := range scan.Items {
		if id := str(it, "job_id"); strings.HasPrefix(id, "idem#") {
			guard = id
			if _, ok := it["owner"]; ok {
				t.Error("guard item has an owner: it would show in listings")
			}
			if num(it, "expires_at") == "" {
				t.Error("guard item has no TTL")
			}
		}
	}
	if guard == "" {
		t.Fatal("no idempotency guard item written")
	}
	if _, err := s.Get(ctx, guard); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get of the guard id = %v, want ErrNotFound", err)
	}
	if page, _, err := s.List(ctx, jobstore.ListQuery{Owner: "o"}); err != nil || len(page) != 1 {
		t.Errorf("List = %d jobs, %v; want 1", len(page), err)
	}
	if act, err := s.Active(ctx); err != nil || len(act) != 1 {
		t.Errorf("Active = %d jobs, %v; want 1", len(act), err)
	}
}

func TestAbandonedGuard(t *testing.T) {
	_, client, table := newDriver(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	d, err := dynamostore.New(client, table, dynamostore.Options{Now: clock, GuardTakeover: time.Minute, GuardWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := jobstore.New(d, nil)

	// A submit that claimed the key and died before writing its job.
	guard := "idem#" + hexSHA("o\x00k")
	_, err = client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"job_id":     &types.AttributeValueMemberS{Value: guard},
		"target":     &types.AttributeValueMemberS{Value: "job-never-written"},
		"created_at": &types.AttributeValueMemberS{Value: now.UTC().Format("2006-01-02T15:04:05.000000000Z")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// While the guard is young, a retry waits and then reports a conflict.
	if _, err := s.Create(ctx, &jobs.Job{Owner: "o", IdempotencyKey: "k"}); !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("Create behind a young guard = %v; want ErrConflict", err)
	}
	// Once it is old, the key is taken over and the job created.
	now = now.Add(2 * time.Minute)
	j, err := s.Create(ctx, &jobs.Job{Owner: "o", IdempotencyKey: "k"})
	if err != nil {
		t.Fatalf("Create after takeover: %v", err)
	}
	if got, err := s.Create(ctx, &jobs.Job{Owner: "o", IdempotencyKey: "k"}); !errors.Is(err, jobs.ErrDuplicate) || got.ID != j.ID {
		t.Fatalf("retry after takeover = %v, %v; want the new job as duplicate", got, err)
	}
}

func hexSHA(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestCursorOfAnotherOwner(t *testing.T) {
	d, _, _ := newDriver(t)
	ctx := context.Background()
	s := jobstore.New(d, nil)
	for range 3 {
		if _, err := s.Create(ctx, &jobs.Job{Owner: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	_, next, err := s.List(ctx, jobstore.ListQuery{Owner: "alice", Limit: 1})
	if err != nil || next == "" {
		t.Fatalf("List: next %q, %v", next, err)
	}
	if _, _, err := s.List(ctx, jobstore.ListQuery{Owner: "mallory", Limit: 1, Cursor: next}); !errors.Is(err, jobstore.ErrInvalidCursor) {
		t.Errorf("another owner's cursor: %v, want ErrInvalidCursor", err)
	}
}

func TestMissingTable(t *testing.T) {
	cfg := awstest.Config(t, awstest.DynamoDB)
	d, err := dynamostore.NewFromConfig(cfg, awstest.Name(t, "missing"), dynamostore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Get(context.Background(), "job-1")
	if err == nil || hint.Of(err) == "" {
		t.Errorf("Get on a missing table = %v; want an error with a hint", err)
	}
	if _, err := dynamostore.New(nil, "t", dynamostore.Options{}); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := dynamostore.New(dynamodb.NewFromConfig(cfg), "", dynamostore.Options{}); err == nil {
		t.Error("empty table name accepted")
	}
}
