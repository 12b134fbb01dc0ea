package api

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// admitter decides submissions against the concurrent-job limit in
// batches. One count of the active jobs decides every submission that is
// waiting; the admitted ones are then stored and queued concurrently (so
// the embedded store commits them together), and the next batch is decided
// only once they are all in the store. Within this process the limit is
// exact, as under a single lock, but a burst costs one count and a few
// transactions instead of several per submission.
//
// A submission that finds nothing being decided is decided at once, in its
// own goroutine; a goroutine runs only while submissions queue up.
type admitter struct {
	h *handler

	mu      sync.Mutex
	pending []*ticket
	running bool // a batch is being decided, stored or queued
	// room: the last decision left the active count below the limit.
	// Only this process admits jobs here, and jobs ending only make room,
	// so while it holds a submit may skip the check before sealing (the
	// decision still counts).
	room bool
}

// ticket is one submission and its admission decision.
type ticket struct {
	job *jobs.Job

	// Set before decided is closed. Admitted: err and existing are nil,
	// and the holder must call release once the job is stored and queued
	// (or has failed).
	existing *jobs.Job
	err      error
	release  func()
	decided  chan struct{}
}

// admit returns job's admission decision, waiting for it if other
// submissions are being decided.
func (a *admitter) admit(job *jobs.Job) *ticket {
	t := &ticket{job: job, decided: make(chan struct{})}
	a.mu.Lock()
	if a.running {
		a.pending = append(a.pending, t)
		a.mu.Unlock()
		<-t.decided
		return t
	}
	a.running = true
	a.mu.Unlock()
	a.start([]*ticket{t})
	return t
}

// hadRoom reports whether the last decision left room below the limit.
func (a *admitter) hadRoom() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.room
}

func (a *admitter) setRoom(room bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.room = room
}

// start decides batch and hands out the decisions; the next batch starts
// when the last admitted ticket of this one is released.
func (a *admitter) start(batch []*ticket) {
	admitted := a.decide(batch)
	left := atomic.Int64{}
	left.Store(int64(len(admitted)))
	for _, t := range admitted {
		t.release = sync.OnceFunc(func() {
			if left.Add(-1) == 0 {
				a.next()
			}
		})
	}
	for _, t := range batch {
		close(t.decided)
	}
	if len(admitted) == 0 {
		a.next()
	}
}

// next starts deciding the submissions that queued up, if any.
func (a *admitter) next() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		a.running = false
		return
	}
	batch := a.pending
	a.pending = nil
	// Not in this goroutine: it is a submission's, which has its response
	// to write.
	go a.start(batch)
}

// decide sets the outcome of every ticket of batch, oldest first, and
// returns the admitted ones.
func (a *admitter) decide(batch []*ticket) (admitted []*ticket) {
	ctx := context.Background() // the decision serves many requests
	h := a.h
	n, err := h.cfg.Store.CountActive(ctx)
	if err != nil {
		a.setRoom(false)
		for _, t := range batch {
			t.err = err
		}
		return nil
	}
	defer func() { a.setRoom(n < h.cfg.MaxConcurrentJobs) }()
	type idem struct{ owner, key string }
	admittedKeys := map[idem]bool{}
	var (
		active       []*jobs.Job
		activeLoaded bool
	)
	for _, t := range batch {
		k := idem{t.job.Owner, t.job.IdempotencyKey}
		switch {
		case k.key != "" && admittedKeys[k]:
			// A concurrent retry of a submission admitted in this batch:
			// both reach the store, which keeps one job and answers the
			// other with it (jobs.ErrDuplicate). It takes no second slot.
		case n < h.cfg.MaxConcurrentJobs:
			n++
			if k.key != "" {
				admittedKeys[k] = true
			}
		default:
			// At the limit. A retried submit whose job is still active
			// gets that job, not 429.
			t.err = errAtLimit
			if k.key == "" {
				continue
			}
			if !activeLoaded {
				active, err = h.cfg.Store.Active(ctx)
				activeLoaded = true
			}
			if err != nil {
				t.err = err
				continue
			}
			for _, j := range active {
				if j.Owner == k.owner && j.IdempotencyKey == k.key {
					t.existing, t.err = j, nil
					break
				}
			}
			continue
		}
		admitted = append(admitted, t)
	}
	return admitted
}
