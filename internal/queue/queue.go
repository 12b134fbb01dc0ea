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
	// Receive leases up to max messages for visibility; it waits up to wait
	// for at least one. Unacknowledged messages reappear after visibility.
	Receive(ctx context.Context, max int, visibility, wait time.Duration) ([]Delivery, error)
	// Ack deletes a delivered message.
	Ack(ctx context.Context, d Delivery) error
	// Retry makes a delivered message visible again after delay.
	Retry(ctx context.Context, d Delivery, delay time.Duration) error
	Close() error
}

// MaxReceiveCount is how many deliveries a message gets before it is
// dead-lettered and its job failed.
const MaxReceiveCount = 5
