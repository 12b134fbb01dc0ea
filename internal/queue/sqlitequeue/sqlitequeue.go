// Package sqlitequeue is the embedded queue.Queue: messages are rows of the
// queue_messages table in the service's SQLite file (internal/sqlitedb).
// Receiving leases messages with one statement,
//
//	UPDATE … SET visible_at = now + visibility, receive_count + 1, receipt = <new>
//	WHERE id IN (SELECT id … WHERE visible_at <= now … LIMIT n) RETURNING …
//
// so two receivers, in one process or two, never lease the same message.
// A message whose lease runs out becomes visible again; acknowledging
// deletes it. Several named queues can share the table.
package sqlitequeue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

// ErrClosed is returned by calls on a closed queue.
var ErrClosed = errors.New("queue is closed")

// DefaultPollInterval is how often an idle Receive looks for messages sent
// by another process or whose lease ran out. Messages sent through the same
// Queue wake receivers at once.
const DefaultPollInterval = 250 * time.Millisecond

// Options configure a Queue.
type Options struct {
	// Name selects the queue within the table (default "provision").
	Name string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// PollInterval: see DefaultPollInterval.
	PollInterval time.Duration
}

// Queue implements queue.Queue on a database opened by sqlitedb.Open.
type Queue struct {
	st    *sqlitedb.Stmts
	batch *sqlitedb.Batcher // Send: concurrent sends commit together
	name  string
	now   func() time.Time
	poll  time.Duration

	mu     sync.Mutex
	wake   chan struct{} // closed and replaced by every Send
	closed chan struct{}
	once   sync.Once
}

var _ queue.Queue = (*Queue)(nil)

// New returns the queue opts.Name on db. The caller owns db.
func New(db *sql.DB, opts Options) *Queue {
	if opts.Name == "" {
		opts.Name = "provision"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	st := sqlitedb.NewStmts(db)
	return &Queue{st: st, batch: sqlitedb.NewBatcher(db, st), name: opts.Name, now: opts.Now, poll: opts.PollInterval,
		wake: make(chan struct{}), closed: make(chan struct{})}
}

func (q *Queue) isClosed() bool {
	select {
	case <-q.closed:
		return true
	default:
		return false
	}
}

// signal returns the channel the next Send closes.
func (q *Queue) signal() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.wake
}

func (q *Queue) broadcast() {
	q.mu.Lock()
	defer q.mu.Unlock()
	close(q.wake)
	q.wake = make(chan struct{})
}

// Send enqueues jobID, visible at once.
func (q *Queue) Send(ctx context.Context, jobID string) error {
	if q.isClosed() {
		return ErrClosed
	}
	if jobID == "" {
		return errors.New("send: empty job id")
	}
	now := sqlitedb.Nanos(q.now())
	if _, err := q.batch.Exec(ctx, `INSERT INTO queue_messages (queue, job_id, visible_at, sent_at)
		VALUES (?, ?, ?, ?)`, q.name, jobID, now, now); err != nil {
		return fmt.Errorf("send job %s to queue %s: %w", jobID, q.name, err)
	}
	q.broadcast()
	return nil
}

// Receive leases up to n visible messages, waiting up to wait for one.
func (q *Queue) Receive(ctx context.Context, n int, visibility, wait time.Duration) ([]queue.Delivery, error) {
	n = min(queue.MaxBatch, max(1, n))
	visibility = max(0, visibility)
	deadline := time.Now().Add(max(0, wait))
	for {
		if q.isClosed() {
			return nil, ErrClosed
		}
		woken := q.signal()
		ds, err := q.claim(ctx, n, visibility)
		if err != nil || len(ds) > 0 {
			return ds, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		pause := min(left, q.poll)
		if next, ok, err := q.nextVisible(ctx); err != nil {
			return nil, err
		} else if ok {
			pause = min(pause, max(time.Millisecond, next.Sub(q.now())))
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-q.closed:
			timer.Stop()
			return nil, ErrClosed
		case <-woken:
			timer.Stop()
		case <-timer.C:
		}
	}
}

func (q *Queue) claim(ctx context.Context, n int, visibility time.Duration) ([]queue.Delivery, error) {
	now := q.now()
	rows, err := q.st.Query(ctx, `UPDATE queue_messages
		SET visible_at = ?, receive_count = receive_count + 1, receipt = lower(hex(randomblob(16)))
		WHERE id IN (
			SELECT id FROM queue_messages
			WHERE queue = ? AND visible_at <= ?
			ORDER BY visible_at, id
			LIMIT ?)
		RETURNING id, job_id, receive_count, receipt`,
		sqlitedb.Nanos(now.Add(visibility)), q.name, sqlitedb.Nanos(now), n)
	if err != nil {
		return nil, fmt.Errorf("receive from queue %s: %w", q.name, err)
	}
	defer rows.Close()
	type row struct {
		id int64
		d  queue.Delivery
	}
	var got []row
	for rows.Next() {
		var (
			r       row
			receipt string
		)
		if err := rows.Scan(&r.id, &r.d.JobID, &r.d.ReceiveCount, &receipt); err != nil {
			return nil, fmt.Errorf("receive from queue %s: %w", q.name, err)
		}
		r.d.Receipt = strconv.FormatInt(r.id, 10) + "." + receipt
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("receive from queue %s: %w", q.name, err)
	}
	sort.Slice(got, func(a, b int) bool { return got[a].id < got[b].id })
	out := make([]queue.Delivery, len(got))
	for i, r := range got {
		out[i] = r.d
	}
	return out, nil
}

// nextVisible reports when the next leased or delayed message becomes
// visible, so a waiting Receive does not sleep past it.
func (q *Queue) nextVisible(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := q.st.QueryRow(ctx, `SELECT MIN(visible_at) FROM queue_messages WHERE queue = ? AND visible_at > ?`,
		q.name, sqlitedb.Nanos(q.now())).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("receive from queue %s: %w", q.name, err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return sqlitedb.Time(next.Int64), true, nil
}

func parseReceipt(r string) (int64, string, error) {
	idPart, token, ok := strings.Cut(r, ".")
	id, err := strconv.ParseInt(idPart, 10, 64)
	if !ok || err != nil || token == "" {
		return 0, "", fmt.Errorf("invalid receipt %q", r)
	}
	return id, token, nil
}

// Ack deletes the delivered message if d's lease is still the current one.
func (q *Queue) Ack(ctx context.Context, d queue.Delivery) error {
	if q.isClosed() {
		return ErrClosed
	}
	id, token, err := parseReceipt(d.Receipt)
	if err != nil {
		return fmt.Errorf("ack job %s: %w", d.JobID, err)
	}
	if _, err := q.st.Exec(ctx, `DELETE FROM queue_messages WHERE id = ? AND receipt = ?`, id, token); err != nil {
		return fmt.Errorf("ack job %s: %w", d.JobID, err)
	}
	return nil
}

// Retry makes the delivered message visible again after delay.
func (q *Queue) Retry(ctx context.Context, d queue.Delivery, delay time.Duration) error {
	if q.isClosed() {
		return ErrClosed
	}
	id, token, err := parseReceipt(d.Receipt)
	if err != nil {
		return fmt.Errorf("retry job %s: %w", d.JobID, err)
	}
	at := q.now().Add(max(0, delay))
	if _, err := q.st.Exec(ctx, `UPDATE queue_messages SET visible_at = ? WHERE id = ? AND receipt = ?`,
		sqlitedb.Nanos(at), id, token); err != nil {
		return fmt.Errorf("retry job %s: %w", d.JobID, err)
	}
	if delay <= 0 {
		q.broadcast()
	}
	return nil
}

// Close wakes and stops waiting receivers; it does not close the database.
func (q *Queue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}
