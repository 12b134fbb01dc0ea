// Package queuetest is the conformance suite every queue.Queue passes:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T) queue.Queue { return newTestQueue(t) })
//	}
//
// newQueue must return a queue that is empty and used by nobody else (a new
// table name, a new SQS queue); the suite closes it. Timings stay within
// what SQS can do: visibility timeouts and delays are whole seconds, at
// most 10 messages per receive, and a receive may return fewer messages
// than are available. The suite takes about 20 seconds.
package queuetest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/queue"
)

// Run runs the conformance suite against the queues newQueue returns.
func Run(t *testing.T, newQueue func(t *testing.T) queue.Queue) {
	t.Helper()
	setup := func(t *testing.T) queue.Queue {
		t.Helper()
		q := newQueue(t)
		t.Cleanup(func() {
			if err := q.Close(); err != nil {
				t.Errorf("close queue: %v", err)
			}
		})
		return q
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, q queue.Queue)
	}{
		{"SendReceiveAck", testSendReceiveAck},
		{"EveryMessageOnce", testEveryMessageOnce},
		{"SameJobTwice", testSameJobTwice},
		{"MaxRespected", testMaxRespected},
		{"VisibilityTimeoutRedelivers", testVisibilityRedelivers},
		{"RetryWithDelay", testRetryWithDelay},
		{"ConcurrentReceiversNeverShareALease", testConcurrentReceivers},
		{"ReceiveWaitsAndReturnsEarly", testReceiveWaits},
		{"ReceiveStopsWithContext", testReceiveContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, setup(t))
		})
	}
}

const longLease = 60 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func send(t *testing.T, q queue.Queue, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := q.Send(ctxFor(t), id); err != nil {
			t.Fatalf("Send %s: %v", id, err)
		}
	}
}

// receiveN receives until n deliveries arrived or within expires; it fails
// the test on error or if fewer arrive.
func receiveN(t *testing.T, q queue.Queue, n int, visibility, within time.Duration) []queue.Delivery {
	t.Helper()
	var got []queue.Delivery
	deadline := time.Now().Add(within)
	for len(got) < n && time.Now().Before(deadline) {
		ds, err := q.Receive(ctxFor(t), min(10, n-len(got)), visibility, time.Second)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, ds...)
	}
	if len(got) < n {
		t.Fatalf("received %d messages within %s, want %d", len(got), within, n)
	}
	return got
}

// expectNone fails if a message is delivered during wait.
func expectNone(t *testing.T, q queue.Queue, wait time.Duration, why string) {
	t.Helper()
	ds, err := q.Receive(ctxFor(t), 10, longLease, wait)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(ds) > 0 {
		t.Fatalf("%s: got %d deliveries (%+v), want none", why, len(ds), ds)
	}
}

func testSendReceiveAck(t *testing.T, q queue.Queue) {
	send(t, q, "job-1")
	ds := receiveN(t, q, 1, time.Second, 10*time.Second)
	d := ds[0]
	if d.JobID != "job-1" || d.ReceiveCount != 1 || d.Receipt == "" {
		t.Fatalf("delivery = %+v, want job-1, receive count 1 and a receipt", d)
	}
	if err := q.Ack(ctxFor(t), d); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	// Past the 1 s visibility timeout the acknowledged message stays gone.
	expectNone(t, q, 2*time.Second, "after Ack")
}

func testEveryMessageOnce(t *testing.T, q queue.Queue) {
	var want []string
	for i := range 7 {
		want = append(want, fmt.Sprintf("job-%d", i))
	}
	send(t, q, want...)
	ds := receiveN(t, q, len(want), longLease, 15*time.Second)
	var got []string
	for _, d := range ds {
		got = append(got, d.JobID)
		if d.ReceiveCount != 1 {
			t.Errorf("first delivery of %s has receive count %d", d.JobID, d.ReceiveCount)
		}
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("received %v, want each of %v once", got, want)
	}
	expectNone(t, q, time.Second, "all messages leased")
	for _, d := range ds {
		if err := q.Ack(ctxFor(t), d); err != nil {
			t.Fatalf("Ack %s: %v", d.JobID, err)
		}
	}
}

func testSameJobTwice(t *testing.T, q queue.Queue) {
	// The queue does not deduplicate: the consumer is idempotent instead.
	send(t, q, "job-x", "job-x")
	ds := receiveN(t, q, 2, longLease, 10*time.Second)
	if ds[0].JobID != "job-x" || ds[1].JobID != "job-x" || ds[0].Receipt == ds[1].Receipt {
		t.Errorf("deliveries %+v, want two of job-x with distinct receipts", ds)
	}
}

func testMaxRespected(t *testing.T, q queue.Queue) {
	send(t, q, "a", "b", "c", "d", "e")
	total := 0
	deadline := time.Now().Add(15 * time.Second)
	for total < 5 && time.Now().Before(deadline) {
		ds, err := q.Receive(ctxFor(t), 2, longLease, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) > 2 {
			t.Fatalf("Receive(max 2) returned %d messages", len(ds))
		}
		total += len(ds)
	}
	if total != 5 {
		t.Errorf("received %d of 5 messages two at a time", total)
	}
}

func testVisibilityRedelivers(t *testing.T, q queue.Queue) {
	send(t, q, "job-v")
	first := receiveN(t, q, 1, time.Second, 10*time.Second)[0]
	// While leased, nobody else sees it.
	if ds, err := q.Receive(ctxFor(t), 10, longLease, 0); err != nil || len(ds) != 0 {
		t.Fatalf("Receive during the lease: %+v, %v; want nothing", ds, err)
	}
	// Not acknowledged: it comes back after the visibility timeout, counted.
	second := receiveN(t, q, 1, longLease, 10*time.Second)[0]
	if second.JobID != "job-v" || second.ReceiveCount != 2 {
		t.Fatalf("redelivery = %+v, want job-v with receive count 2", second)
	}
	if second.Receipt == first.Receipt {
		t.Errorf("redelivery reused the receipt %q", first.Receipt)
	}
	if err := q.Ack(ctxFor(t), second); err != nil {
		t.Fatalf("Ack redelivery: %v", err)
	}
	expectNone(t, q, time.Second, "after acknowledging the redelivery")
}

func testRetryWithDelay(t *testing.T, q queue.Queue) {
	send(t, q, "job-r")
	d := receiveN(t, q, 1, longLease, 10*time.Second)[0]
	retried := time.Now()
	if err := q.Retry(ctxFor(t), d, 2*time.Second); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	// Hidden for the delay even though the lease was 60 s long...
	if ds, err := q.Receive(ctxFor(t), 10, longLease, 0); err != nil || len(ds) != 0 {
		t.Fatalf("Receive right after Retry(2s): %+v, %v; want nothing", ds, err)
	}
	// ...then delivered again, counted.
	d2 := receiveN(t, q, 1, longLease, 10*time.Second)[0]
	if el := time.Since(retried); el < time.Second {
		t.Errorf("retried message came back after %s, before its 2 s delay", el)
	}
	if d2.JobID != "job-r" || d2.ReceiveCount != 2 {
		t.Fatalf("after Retry: %+v, want job-r with receive count 2", d2)
	}
	// A zero delay makes it visible again at once.
	if err := q.Retry(ctxFor(t), d2, 0); err != nil {
		t.Fatalf("Retry(0): %v", err)
	}
	d3 := receiveN(t, q, 1, longLease, 5*time.Second)[0]
	if d3.ReceiveCount != 3 {
		t.Errorf("after Retry(0): receive count %d, want 3", d3.ReceiveCount)
	}
	if err := q.Ack(ctxFor(t), d3); err != nil {
		t.Fatal(err)
	}
}

func testConcurrentReceivers(t *testing.T, q queue.Queue) {
	const n, receivers = 24, 4
	for i := range n {
		send(t, q, fmt.Sprintf("job-%02d", i))
	}
	ctx := ctxFor(t)
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		errs = make(chan error, receivers)
	)
	deadline := time.Now().Add(20 * time.Second)
	for range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				mu.Lock()
				total := 0
				for _, c := range seen {
					total += c
				}
				mu.Unlock()
				if total >= n {
					return
				}
				ds, err := q.Receive(ctx, 3, longLease, time.Second)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.JobID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Receive: %v", err)
	}
	for i := range n {
		id := fmt.Sprintf("job-%02d", i)
		if seen[id] != 1 {
			t.Errorf("%s delivered %d times while leased, want once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("received %d distinct jobs, want %d", len(seen), n)
	}
}

func testReceiveWaits(t *testing.T, q queue.Queue) {
	start := time.Now()
	expectNone(t, q, 2*time.Second, "empty queue")
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Errorf("Receive on an empty queue with wait 2s returned after %s", el)
	}

	type result struct {
		ds  []queue.Delivery
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	ctx := ctxFor(t)
	start = time.Now()
	go func() {
		ds, err := q.Receive(ctx, 1, longLease, 10*time.Second)
		done <- result{ds, err, time.Now()}
	}()
	// Send while the receiver is (very likely) already waiting.
	time.Sleep(500 * time.Millisecond)
	send(t, q, "job-w")
	r := <-done
	if r.err != nil {
		t.Fatalf("Receive: %v", r.err)
	}
	if len(r.ds) != 1 || r.ds[0].JobID != "job-w" {
		t.Fatalf("waiting Receive got %+v, want job-w", r.ds)
	}
	if el := r.at.Sub(start); el > 5*time.Second {
		t.Errorf("waiting Receive returned %s after start, want soon after the send (wait was 10s)", el)
	}
}

func testReceiveContext(t *testing.T, q queue.Queue) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	ds, _ := q.Receive(ctx, 10, longLease, 10*time.Second)
	if len(ds) != 0 {
		t.Errorf("Receive on an empty queue returned %+v", ds)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Receive ignored its context: returned after %s", el)
	}
	// The queue still works afterwards.
	send(t, q, "job-after")
	if d := receiveN(t, q, 1, longLease, 10*time.Second)[0]; d.JobID != "job-after" {
		t.Errorf("after a cancelled Receive got %+v", d)
	}
}
