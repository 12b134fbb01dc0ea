package sqsqueue_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/queuetest"
	"github.com/serenorg/postgres-seren-replicator/internal/queue/sqsqueue"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

type bundle struct {
	client   *sqs.Client
	url, dlq string
}

func setup(t *testing.T) (*sqsqueue.Queue, *bundle) {
	t.Helper()
	cfg := awstest.Config(t, awstest.SQS)
	b := &bundle{client: sqs.NewFromConfig(cfg)}
	var err error
	b.url, b.dlq, err = sqsqueue.CreateQueueWithDLQ(context.Background(), b.client, awstest.Name(t, "prov"), 0)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqsqueue.NewFromConfig(cfg, b.url)
	if err != nil {
		t.Fatal(err)
	}
	return q, b
}

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, _ := setup(t)
		return q
	})
}

func TestRedrivePolicy(t *testing.T) {
	_, b := setup(t)
	out, err := b.client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(b.url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Target string `json:"deadLetterTargetArn"`
		Max    any    `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(out.Attributes["RedrivePolicy"]), &p); err != nil {
		t.Fatalf("redrive policy %q: %v", out.Attributes["RedrivePolicy"], err)
	}
	if p.Target == "" || (p.Max != "5" && p.Max != float64(5)) {
		t.Errorf("redrive policy = %+v, want the DLQ and maxReceiveCount 5", p)
	}
}

// After MaxReceiveCount deliveries without Ack the message leaves for the
// dead-letter queue, still carrying only the job id.
func TestDeadLetterAfterMaxReceiveCount(t *testing.T) {
	q, b := setup(t)
	ctx := context.Background()
	if err := q.Send(ctx, "job-doomed"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= queue.MaxReceiveCount; i++ {
		ds := receive(t, q, 1)
		if len(ds) != 1 || ds[0].JobID != "job-doomed" || ds[0].ReceiveCount != i {
			t.Fatalf("delivery %d = %+v", i, ds)
		}
		if err := q.Retry(ctx, ds[0], 0); err != nil {
			t.Fatal(err)
		}
	}
	if ds, err := q.Receive(ctx, 10, time.Minute, time.Second); err != nil || len(ds) != 0 {
		t.Fatalf("delivery %d: %+v, %v; want none (dead-lettered)", queue.MaxReceiveCount+1, ds, err)
	}
	dlq, err := sqsqueue.New(b.client, b.dlq)
	if err != nil {
		t.Fatal(err)
	}
	ds := receive(t, dlq, 1)
	if len(ds) != 1 || ds[0].JobID != "job-doomed" {
		t.Fatalf("dead-letter queue holds %+v, want job-doomed", ds)
	}
}

func receive(t *testing.T, q *sqsqueue.Queue, n int) []queue.Delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got []queue.Delivery
	for len(got) < n && time.Now().Before(deadline) {
		ds, err := q.Receive(context.Background(), n-len(got), time.Minute, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ds...)
	}
	return got
}

func TestMessageIsTheJobID(t *testing.T) {
	q, b := setup(t)
	ctx := context.Background()
	if err := q.Send(ctx, "7b1c2d3e-job"); err != nil {
		t.Fatal(err)
	}
	out, err := b.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(b.url), WaitTimeSeconds: 2,
		MessageAttributeNames: []string{"All"}})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("ReceiveMessage: %v (%d messages)", err, len(out.Messages))
	}
	m := out.Messages[0]
	if aws.ToString(m.Body) != "7b1c2d3e-job" || len(m.MessageAttributes) != 0 {
		t.Errorf("message body %q attributes %v; want the bare job id", aws.ToString(m.Body), m.MessageAttributes)
	}
}

func TestDeliveryFromEventAttributes(t *testing.T) {
	for _, tc := range []struct {
		attrs map[string]string
		want  int
	}{
		{map[string]string{"ApproximateReceiveCount": "3"}, 3},
		{map[string]string{"ApproximateReceiveCount": "x"}, 1},
		{nil, 1},
	} {
		if d := sqsqueue.Delivery("job", "r", tc.attrs); d.JobID != "job" || d.Receipt != "r" || d.ReceiveCount != tc.want {
			t.Errorf("Delivery(%v) = %+v, want receive count %d", tc.attrs, d, tc.want)
		}
	}
}

func TestMissingQueue(t *testing.T) {
	cfg := awstest.Config(t, awstest.SQS)
	client := sqs.NewFromConfig(cfg)
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(awstest.Name(t, "gone"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	q, err := sqsqueue.New(client, aws.ToString(out.QueueUrl))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Send(context.Background(), "job"); err == nil || hint.Of(err) == "" {
		t.Errorf("Send to a deleted queue = %v; want an error with a hint", err)
	}
	if _, err := sqsqueue.New(client, ""); err == nil {
		t.Error("empty queue URL accepted")
	}
}
