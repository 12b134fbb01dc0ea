// Package queue defines the provisioning queue that decouples submission
// from provisioning: messages carry only a job id. Drivers: queue/sqlitequeue
// (a SQLite table with leases and a visibility timeout) and queue/sqsqueue
// (SQS with a dead-letter queue). queue/queuetest is the conformance suite.
package queue

import (
	"context"
	"time"
)

// Delivery is one received message.
type Delivery struct {
	JobID string
	// Receipt identifies this delivery for Ack/Retry.
	Receipt string
	// ReceiveCount is how many times the message was delivered (1 the first time).
	ReceiveCount int
}

// Queue is what a backend implements.
type Queue interface {
	// Send enqueues a job id.
	Send(ctx context.Context, jobID string) error
	// Receive leases up to max (1..MaxBatch) messages for visibility; it
	// waits up to wait for at least one and returns as soon as one arrives
	// (or ctx ends). Unacknowledged messages reappear after visibility with
	// ReceiveCount incremented. It may return fewer messages than are
	// available; order is not guaranteed. Durations are honoured to the
	// second (SQS's granularity).
	Receive(ctx context.Context, max int, visibility, wait time.Duration) ([]Delivery, error)
	// Ack deletes a delivered message. With a receipt whose lease has since
	// passed to another receiver the message may stay (as in SQS).
	Ack(ctx context.Context, d Delivery) error
	// Retry makes a delivered message visible again after delay (0: at once).
	Retry(ctx context.Context, d Delivery, delay time.Duration) error
	Close() error
}

// MaxBatch is the most messages one Receive returns (SQS's limit).
const MaxBatch = 10

// MaxReceiveCount is how many deliveries a message gets before it is
// dead-lettered and its job failed. The queue only counts (ReceiveCount);
// the consumer compares and fails the job, as the SQS redrive policy with
// the same maxReceiveCount moves the message to the dead-letter queue.
const MaxReceiveCount = 5
