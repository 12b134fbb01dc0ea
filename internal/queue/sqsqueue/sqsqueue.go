// Package sqsqueue is the AWS queue.Queue: the provisioning queue on SQS.
// A message's body is the job id and nothing else. Receive long-polls
// (WaitTimeSeconds, at most 20) with a per-call VisibilityTimeout and reads
// ApproximateReceiveCount as the delivery's ReceiveCount; Retry is
// ChangeMessageVisibility; Ack is DeleteMessage. The queue's redrive
// policy (maxReceiveCount = queue.MaxReceiveCount) moves a message that
// keeps failing to the dead-letter queue: deploy/aws/terraform sets it up,
// CreateQueueWithDLQ does the same for tests and local use.
package sqsqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
)

// API is the part of the SQS client the queue uses.
type API interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// SQS limits.
const (
	maxWaitSeconds       = 20
	maxVisibilitySeconds = 12 * 60 * 60
)

// Queue is one SQS queue.
type Queue struct {
	api API
	url string
}

var _ queue.Queue = (*Queue)(nil)

// New returns the queue at queueURL.
func New(api API, queueURL string) (*Queue, error) {
	if api == nil {
		return nil, errors.New("sqsqueue: nil SQS client")
	}
	if queueURL == "" {
		return nil, hint.Wrap(errors.New("sqsqueue: no queue URL"),
			"set the provisioning queue URL (Terraform output of aws_sqs_queue.provisioning) in the service configuration")
	}
	return &Queue{api: api, url: queueURL}, nil
}

// NewFromConfig builds the client from cfg (config.LoadDefaultConfig, so
// AWS_ENDPOINT_URL_SQS is honoured).
func NewFromConfig(cfg aws.Config, queueURL string) (*Queue, error) {
	return New(sqs.NewFromConfig(cfg), queueURL)
}

// URL is the queue's URL.
func (q *Queue) URL() string { return q.url }

// Close releases nothing.
func (q *Queue) Close() error { return nil }

// seconds rounds d up to whole seconds within [0, limit].
func seconds(d time.Duration, limit int32) int32 {
	if d <= 0 {
		return 0
	}
	s := math.Ceil(d.Seconds())
	if s > float64(limit) {
		return limit
	}
	return int32(s)
}

// Send enqueues a job id.
func (q *Queue) Send(ctx context.Context, jobID string) error {
	if jobID == "" {
		return errors.New("sqs send: empty job id")
	}
	if _, err := q.api.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.url), MessageBody: aws.String(jobID)}); err != nil {
		return q.classify(fmt.Errorf("sqs SendMessage job %s: %w", jobID, err))
	}
	return nil
}

// maxDelaySeconds is SQS's limit on a message's DelaySeconds.
const maxDelaySeconds = 15 * 60

// SendAfter enqueues a job id that becomes visible after delay (at most
// 15 minutes, SQS's limit). A new message starts with a receive count of
// zero: the provisioner re-sends a job that waits for a free worker slot
// this way, so waiting never dead-letters it.
func (q *Queue) SendAfter(ctx context.Context, jobID string, delay time.Duration) error {
	if jobID == "" {
		return errors.New("sqs send: empty job id")
	}
	_, err := q.api.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(q.url), MessageBody: aws.String(jobID), DelaySeconds: seconds(delay, maxDelaySeconds),
	})
	if err != nil {
		return q.classify(fmt.Errorf("sqs SendMessage job %s (delay %s): %w", jobID, delay, err))
	}
	return nil
}

// Receive leases up to max messages for visibility, long-polling up to
// wait (in calls of at most 20 s, SQS's limit).
//
// A long poll abandoned by its client can still take a message at the
// server, which then stays invisible for the visibility timeout. So when
// ctx has a deadline, no poll is allowed to outlast it: the last fraction
// of a second is slept, then checked with one short poll.
func (q *Queue) Receive(ctx context.Context, n int, visibility, wait time.Duration) ([]queue.Delivery, error) {
	n = min(queue.MaxBatch, std(n, 1))
	end := time.Now().Add(max0(wait))
	if dl, ok := ctx.Deadline(); ok && dl.Add(-pollMargin).Before(end) {
		end = dl.Add(-pollMargin)
	}
	for {
		remaining := time.Until(end)
		ws := int32(min(maxWaitSeconds, max0(remaining)/time.Second))
		if ws == 0 && remaining > 0 {
			t := time.NewTimer(remaining)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		ds, err := q.poll(ctx, n, visibility, ws)
		if err != nil || len(ds) > 0 || ws == 0 || time.Until(end) < time.Second/2 {
			return ds, err
		}
	}
}

// pollMargin keeps a long poll's end this far ahead of ctx's deadline.
const pollMargin = 250 * time.Millisecond

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

func (q *Queue) poll(ctx context.Context, n int, visibility time.Duration, waitSeconds int32) ([]queue.Delivery, error) {
	out, err := q.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(q.url),
		MaxNumberOfMessages:         int32(n),
		VisibilityTimeout:           seconds(visibility, maxVisibilitySeconds),
		WaitTimeSeconds:             waitSeconds,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, q.classify(fmt.Errorf("sqs ReceiveMessage: %w", err))
	}
	ds := make([]queue.Delivery, 0, len(out.Messages))
	for _, m := range out.Messages {
		ds = append(ds, Delivery(aws.ToString(m.Body), aws.ToString(m.ReceiptHandle), m.Attributes))
	}
	return ds, nil
}

func std(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Delivery builds a queue.Delivery from an SQS message's body, receipt
// handle and system attributes, as ReceiveMessage or a Lambda SQS event
// carries them.
func Delivery(body, receipt string, attrs map[string]string) queue.Delivery {
	count := 1
	if v, err := strconv.Atoi(attrs[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil && v > 0 {
		count = v
	}
	return queue.Delivery{JobID: body, Receipt: receipt, ReceiveCount: count}
}

// Ack deletes a delivered message.
func (q *Queue) Ack(ctx context.Context, d queue.Delivery) error {
	if _, err := q.api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: aws.String(d.Receipt)}); err != nil {
		return q.classify(fmt.Errorf("sqs DeleteMessage job %s: %w", d.JobID, err))
	}
	return nil
}

// Retry makes a delivered message visible again after delay.
func (q *Queue) Retry(ctx context.Context, d queue.Delivery, delay time.Duration) error {
	_, err := q.api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(q.url),
		ReceiptHandle:     aws.String(d.Receipt),
		VisibilityTimeout: seconds(delay, maxVisibilitySeconds),
	})
	if err != nil {
		return q.classify(fmt.Errorf("sqs ChangeMessageVisibility job %s: %w", d.JobID, err))
	}
	return nil
}

func (q *Queue) classify(err error) error {
	var nq *types.QueueDoesNotExist
	if errors.As(err, &nq) {
		return hint.Wrap(err, fmt.Sprintf("create the queue %s (deploy/aws/terraform does), or fix the queue URL in the configuration", q.url))
	}
	return err
}

// CreateQueueWithDLQ creates queue name and its dead-letter queue
// name+"-dlq" with a redrive policy of maxReceiveCount (queue.MaxReceiveCount
// when 0), as deploy/aws/terraform does, and returns both URLs. For tests
// and local use; existing queues with the same attributes are reused.
func CreateQueueWithDLQ(ctx context.Context, client *sqs.Client, name string, maxReceiveCount int) (queueURL, dlqURL string, err error) {
	if maxReceiveCount <= 0 {
		maxReceiveCount = queue.MaxReceiveCount
	}
	dlq, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		return "", "", fmt.Errorf("create dead-letter queue %s-dlq: %w", name, err)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: dlq.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", "", fmt.Errorf("read dead-letter queue %s-dlq ARN: %w", name, err)
	}
	policy, err := json.Marshal(map[string]string{
		"deadLetterTargetArn": attrs.Attributes[string(types.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     strconv.Itoa(maxReceiveCount),
	})
	if err != nil {
		return "", "", err
	}
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: map[string]string{string(types.QueueAttributeNameRedrivePolicy): string(policy)},
	})
	if err != nil {
		return "", "", fmt.Errorf("create queue %s: %w", name, err)
	}
	return aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl), nil
}
