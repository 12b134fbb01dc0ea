package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// maxBatch bounds how many writes one Batcher transaction carries.
const maxBatch = 128

// Batcher runs single-statement writes from many goroutines in shared
// transactions (group commit): a write that arrives while none is running
// runs at once, on its own; the writes that arrive while a transaction is
// committing queue up and then commit together, in one transaction.
//
// A transaction costs the same fixed work (locks, WAL header, wal-index)
// however many rows it writes, and rows written one after another share
// their B-tree pages (the newest end of every index on a time or a rowid),
// so a batch of n inserts writes far fewer than n times the pages. It adds
// no wait when writes are rare: nothing is held back to form a batch, and a
// write that finds nothing running runs at once in its caller's goroutine.
//
// Each Exec returns only when its write is committed or has failed. When
// one write of a batch fails, or the transaction does, nothing of the batch
// is committed and every write of it is run again on its own, so a bad
// write fails alone and never takes others with it. A goroutine runs
// the batches while writes are queued, none otherwise.
type Batcher struct {
	db *sql.DB
	st *Stmts

	mu      sync.Mutex
	pending []*write
	running bool
}

type write struct {
	ctx   context.Context
	query string
	args  []any
	res   sql.Result
	err   error
	done  chan struct{}
}

// NewBatcher returns a batcher writing to db with statements prepared by st
// (which must be on the same db).
func NewBatcher(db *sql.DB, st *Stmts) *Batcher { return &Batcher{db: db, st: st} }

// Exec runs query, a single statement that returns no rows, like
// db.ExecContext, and returns once it is committed. A write whose ctx ends
// before its batch starts is not run.
func (b *Batcher) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.running {
		w := &write{ctx: ctx, query: query, args: args, done: make(chan struct{})}
		b.pending = append(b.pending, w)
		b.mu.Unlock()
		<-w.done
		return w.res, w.err
	}
	// Nothing is running: write at once, in this goroutine.
	b.running = true
	b.mu.Unlock()
	res, err := b.st.Exec(ctx, query, args...)
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.running = false
	} else {
		go b.loop() // the writes that queued up meanwhile
	}
	b.mu.Unlock()
	return res, err
}

// loop runs batches until none is pending.
func (b *Batcher) loop() {
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxBatch)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		batch := make([]*write, n)
		copy(batch, b.pending)
		b.pending = append(b.pending[:0], b.pending[n:]...)
		b.mu.Unlock()
		b.run(batch)
	}
}

func (b *Batcher) run(batch []*write) {
	live := make([]*write, 0, len(batch))
	for _, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.err = err
			close(w.done)
			continue
		}
		live = append(live, w)
	}
	if len(live) > 1 && b.runTx(live) == nil {
		for _, w := range live {
			close(w.done)
		}
		return
	}
	// One write, or the shared transaction failed (and was rolled back):
	// each write on its own.
	for _, w := range live {
		w.res, w.err = b.st.Exec(w.ctx, w.query, w.args...)
		close(w.done)
	}
}

// runTx runs ws in one transaction; on error nothing is committed and no
// write's result is set.
func (b *Batcher) runTx(ws []*write) error {
	// The transaction carries many callers' writes: no one caller's
	// context may roll it back. Each statement runs under its own.
	tx, err := b.db.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("begin batch: %w", err)
	}
	defer tx.Rollback()
	res := make([]sql.Result, len(ws))
	for i, w := range ws {
		st, err := b.st.Tx(w.ctx, tx, w.query)
		if err != nil {
			return err
		}
		if res[i], err = st.ExecContext(w.ctx, w.args...); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	for i, w := range ws {
		w.res = res[i]
	}
	return nil
}
