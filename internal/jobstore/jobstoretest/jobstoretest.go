// Package jobstoretest is the conformance suite every jobstore.Driver
// passes. A driver package runs it with a two-line test:
//
//	func TestConformance(t *testing.T) {
//		jobstoretest.Run(t, func(t *testing.T) jobstore.Driver { return newTestDriver(t) })
//	}
//
// newDriver must return a driver on a fresh, empty store each time it is
// called (a new file, a new table); the suite closes it. The suite drives
// the driver through the portable jobstore.Store with an injected clock, so
// it checks what users of the store rely on: idempotent submits, newest
// first paging per owner, compare-and-set transitions, byte-exact sealed
// credentials and expiry.
package jobstoretest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
)

// Options describe documented differences of a backend.
type Options struct {
	// ExpiresItself: the backend deletes expired records on its own
	// (DynamoDB TTL), so DeleteExpired may remove nothing. The suite then
	// checks only that the portable Store hides expired jobs.
	ExpiresItself bool
}

// Clock is a settable clock for the Store under test.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed instant near now with a nanosecond
// part, so stores that lose precision are caught.
func NewClock() *Clock {
	return &Clock{t: time.Now().UTC().Truncate(time.Second).Add(123456789 * time.Nanosecond)}
}

// Now returns the current instant.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d and returns the new instant.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

type bundle struct {
	driver jobstore.Driver
	clock  *Clock
	opts   Options
}

// Run runs the conformance suite against the driver newDriver returns.
func Run(t *testing.T, newDriver func(t *testing.T) jobstore.Driver, opts ...Options) {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	setup := func(t *testing.T) (*jobstore.Store, *bundle) {
		t.Helper()
		d := newDriver(t)
		b := &bundle{driver: d, clock: NewClock(), opts: o}
		s := jobstore.New(d, b.clock.Now)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close driver: %v", err)
			}
		})
		return s, b
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s *jobstore.Store, b *bundle)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"CreateKeepsGivenIDs", testCreateKeepsGivenIDs},
		{"NotFound", testNotFound},
		{"DuplicateID", testDuplicateID},
		{"IdempotencyKeyPerOwner", testIdempotencyKeyPerOwner},
		{"IdempotencyKeyConcurrent", testIdempotencyKeyConcurrent},
		{"ListNewestFirstPaged", testListNewestFirstPaged},
		{"ListOwnerIsolation", testListOwnerIsolation},
		{"ListStatusFilter", testListStatusFilter},
		{"ListSameInstant", testListSameInstant},
		{"ListInvalidCursor", testListInvalidCursor},
		{"Active", testActive},
		{"LifecycleTimestampsAndHistory", testLifecycle},
		{"RequeueAndRestart", testRequeue},
		{"IllegalTransitionsRefused", testIllegalTransitions},
		{"PutCompareAndSet", testPutCompareAndSet},
		{"StaleWorkerWritesRefused", testStaleWorker},
		{"PutFencedOnWorkerAndAttempt", testPutFenced},
		{"ConcurrentTerminalTransitionsOneWins", testConcurrentTerminal},
		{"ConcurrentWritersNoLostUpdate", testConcurrentWriters},
		{"CredentialsByteExact", testCredentials},
		{"ExpiryAndPurge", testExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, b := setup(t)
			tc.fn(t, s, b)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sampleJob(owner string) *jobs.Job {
	yes := true
	return &jobs.Job{
		Owner: owner,
		Spec: jobs.Spec{
			Command: jobs.CommandInit,
			Filter: jobs.Filter{
				IncludeDatabases: []string{"app", "billing"},
				TableFilters:     []string{"app.events:created_at > now() - interval '1 day'"},
			},
			Options: jobs.Options{EnableSync: &yes, EstimatedSizeBytes: 5 << 30, JobTimeout: 3600},
		},
		Credentials: []byte("sealed-credentials"),
	}
}

func mustCreate(t *testing.T, s *jobstore.Store, j *jobs.Job) *jobs.Job {
	t.Helper()
	got, err := s.Create(ctxFor(t), j)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return got
}

func mustApply(t *testing.T, s *jobstore.Store, id string, tr jobs.Transition) *jobs.Job {
	t.Helper()
	got, err := s.Apply(ctxFor(t), id, tr)
	if err != nil {
		t.Fatalf("Apply %s: %v", tr.To, err)
	}
	return got
}

func mustGet(t *testing.T, s *jobstore.Store, id string) *jobs.Job {
	t.Helper()
	got, err := s.Get(ctxFor(t), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return got
}

// sameJob fails unless got and want hold the same record, credentials
// included.
func sameJob(t *testing.T, what string, got, want *jobs.Job) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s: job differs\n got: %s\nwant: %s", what, g, w)
	}
	if !bytes.Equal(got.Credentials, want.Credentials) {
		t.Errorf("%s: credentials differ: got %q, want %q", what, got.Credentials, want.Credentials)
	}
	for _, tm := range []struct {
		name string
		g, w time.Time
	}{{"created_at", got.CreatedAt, want.CreatedAt}, {"updated_at", got.UpdatedAt, want.UpdatedAt}, {"expires_at", got.ExpiresAt, want.ExpiresAt}} {
		if !tm.g.Equal(tm.w) {
			t.Errorf("%s: %s = %v, want %v", what, tm.name, tm.g, tm.w)
		}
	}
}

func ids(js []*jobs.Job) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// listAll pages through q with the given limit and checks the paging rules.
func listAll(t *testing.T, s *jobstore.Store, q jobstore.ListQuery, total int) []*jobs.Job {
	t.Helper()
	var all []*jobs.Job
	// Every page but possibly the last is allowed to come back short or
	// even empty (backends that filter after reading), so bound the loop by
	// the number of jobs plus slack rather than trusting next.
	for page := 0; page < total+3; page++ {
		got, next, err := s.List(ctxFor(t), q)
		if err != nil {
			t.Fatalf("List page %d: %v", page, err)
		}
		if len(got) > q.Limit {
			t.Fatalf("List page %d returned %d jobs, limit %d", page, len(got), q.Limit)
		}
		all = append(all, got...)
		if next == "" {
			return all
		}
		q.Cursor = next
	}
	t.Fatalf("List did not end after %d pages", total+3)
	return nil
}

func testCreateAndGet(t *testing.T, s *jobstore.Store, b *bundle) {
	now := b.clock.Now()
	in := sampleJob("owner-a")
	in.IdempotencyKey = "submit-1"
	got := mustCreate(t, s, in)

	if got.ID == "" || got.TraceID == "" || got.ID == got.TraceID {
		t.Errorf("Create filled ID %q and TraceID %q; want two distinct non-empty ids", got.ID, got.TraceID)
	}
	if got.Status != jobs.StatusProvisioning {
		t.Errorf("status = %s, want provisioning", got.Status)
	}
	if got.Version != 1 {
		t.Errorf("version = %d, want 1", got.Version)
	}
	if !got.CreatedAt.Equal(now) || !got.UpdatedAt.Equal(now) {
		t.Errorf("created_at/updated_at = %v/%v, want %v", got.CreatedAt, got.UpdatedAt, now)
	}
	if want := now.Add(jobs.Retention); !got.ExpiresAt.Equal(want) {
		t.Errorf("expires_at = %v, want created_at + %s = %v", got.ExpiresAt, jobs.Retention, want)
	}
	if len(got.History) != 1 || got.History[0].Status != jobs.StatusProvisioning || !got.History[0].At.Equal(now) {
		t.Errorf("history = %+v, want one provisioning entry at %v", got.History, now)
	}
	if got.StartedAt != nil || got.CompletedAt != nil {
		t.Errorf("started_at/completed_at set on a new job: %v/%v", got.StartedAt, got.CompletedAt)
	}
	if in.ID != "" || in.Version != 0 {
		t.Errorf("Create modified the caller's job: %+v", in)
	}

	b.clock.Advance(time.Minute)
	read := mustGet(t, s, got.ID)
	sameJob(t, "Get after Create", read, got)
	if read.Owner != "owner-a" || read.IdempotencyKey != "submit-1" {
		t.Errorf("owner/idempotency key = %q/%q", read.Owner, read.IdempotencyKey)
	}
	if read.Spec.Options.EnableSync == nil || !*read.Spec.Options.EnableSync || len(read.Spec.Filter.IncludeDatabases) != 2 {
		t.Errorf("spec not stored faithfully: %+v", read.Spec)
	}
}

func testCreateKeepsGivenIDs(t *testing.T, s *jobstore.Store, b *bundle) {
	in := sampleJob("owner-a")
	in.ID, in.TraceID = "job-given-1", "trace-given-1"
	got := mustCreate(t, s, in)
	if got.ID != "job-given-1" || got.TraceID != "trace-given-1" {
		t.Errorf("Create replaced given ids: %q %q", got.ID, got.TraceID)
	}
	sameJob(t, "Get", mustGet(t, s, "job-given-1"), got)
}

func testNotFound(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	mustCreate(t, s, sampleJob("owner-a"))
	if _, err := s.Get(ctx, "no-such-job"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get unknown id: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, ""); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get empty id: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Apply(ctx, "no-such-job", jobs.Cancelled()); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Apply on unknown id: err = %v, want ErrNotFound", err)
	}
}

func testDuplicateID(t *testing.T, s *jobstore.Store, b *bundle) {
	first := sampleJob("owner-a")
	first.ID = "job-dup"
	created := mustCreate(t, s, first)

	second := sampleJob("owner-a")
	second.ID = "job-dup"
	second.Spec.Command = jobs.CommandVerify
	_, err := s.Create(ctxFor(t), second)
	if !errors.Is(err, jobs.ErrDuplicate) {
		t.Fatalf("second Create with the same id: err = %v, want ErrDuplicate", err)
	}
	sameJob(t, "job after duplicate create", mustGet(t, s, "job-dup"), created)
}

func testIdempotencyKeyPerOwner(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	a1 := sampleJob("owner-a")
	a1.IdempotencyKey = "k1"
	first := mustCreate(t, s, a1)

	b.clock.Advance(time.Second)
	retry := sampleJob("owner-a")
	retry.IdempotencyKey = "k1"
	got, err := s.Create(ctx, retry)
	if !errors.Is(err, jobs.ErrDuplicate) {
		t.Fatalf("retried submit: err = %v, want ErrDuplicate", err)
	}
	if got == nil || got.ID != first.ID {
		t.Fatalf("retried submit returned %v, want the first job %s", got, first.ID)
	}
	sameJob(t, "retried submit", got, first)

	other := sampleJob("owner-b")
	other.IdempotencyKey = "k1"
	ob := mustCreate(t, s, other)
	if ob.ID == first.ID {
		t.Errorf("another owner's key matched owner-a's job")
	}

	newKey := sampleJob("owner-a")
	newKey.IdempotencyKey = "k2"
	if j := mustCreate(t, s, newKey); j.ID == first.ID {
		t.Errorf("a new idempotency key returned the old job")
	}
	// Without a key every submit is a new job.
	n1 := mustCreate(t, s, sampleJob("owner-a"))
	n2 := mustCreate(t, s, sampleJob("owner-a"))
	if n1.ID == n2.ID {
		t.Errorf("two submits without a key got the same id")
	}
	all := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 10}, 4)
	if len(all) != 4 {
		t.Errorf("owner-a has %d jobs, want 4 (k1, k2 and two without key): %v", len(all), ids(all))
	}
}

func testIdempotencyKeyConcurrent(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	const n = 8
	type result struct {
		job *jobs.Job
		err error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			j := sampleJob("owner-a")
			j.IdempotencyKey = "same-key"
			got, err := s.Create(ctx, j)
			results[i] = result{got, err}
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	id := ""
	for i, r := range results {
		switch {
		case r.err == nil:
			created++
		case errors.Is(r.err, jobs.ErrDuplicate):
		default:
			t.Fatalf("submit %d: %v", i, r.err)
		}
		if r.job == nil {
			t.Fatalf("submit %d returned no job (err %v)", i, r.err)
		}
		if id == "" {
			id = r.job.ID
		} else if r.job.ID != id {
			t.Errorf("submit %d got job %s, others %s", i, r.job.ID, id)
		}
	}
	if created != 1 {
		t.Errorf("%d of %d concurrent submits with one key created a job, want exactly 1", created, n)
	}
	if all := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 20}, n); len(all) != 1 {
		t.Errorf("store holds %d jobs for one idempotency key, want 1", len(all))
	}
}

// createSeries creates n jobs for owner, one second apart, and returns them
// in creation order.
func createSeries(t *testing.T, s *jobstore.Store, b *bundle, owner string, n int) []*jobs.Job {
	t.Helper()
	out := make([]*jobs.Job, 0, n)
	for range n {
		b.clock.Advance(time.Second)
		out = append(out, mustCreate(t, s, sampleJob(owner)))
	}
	return out
}

func reversedIDs(js []*jobs.Job) []string {
	out := ids(js)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func testListNewestFirstPaged(t *testing.T, s *jobstore.Store, b *bundle) {
	created := createSeries(t, s, b, "owner-a", 7)
	want := reversedIDs(created)

	first, next, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner-a", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !equalStrings(ids(first), want[:3]) {
		t.Errorf("first page = %v, want the 3 newest %v", ids(first), want[:3])
	}
	if next == "" {
		t.Fatalf("first page of 7 jobs with limit 3 has no next cursor")
	}
	all := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 3}, 7)
	if !equalStrings(ids(all), want) {
		t.Errorf("paged listing = %v, want newest first %v", ids(all), want)
	}
	one := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 1}, 7)
	if !equalStrings(ids(one), want) {
		t.Errorf("listing one per page = %v, want %v", ids(one), want)
	}
	whole, next, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner-a", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !equalStrings(ids(whole), want) || next != "" {
		t.Errorf("single page = %v next %q, want %v and no cursor", ids(whole), next, want)
	}
	// Default and oversized limits are clamped, not errors.
	if got, _, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner-a"}); err != nil || len(got) != 7 {
		t.Errorf("List with default limit: %d jobs, err %v; want 7", len(got), err)
	}
	if got, _, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner-a", Limit: 100000}); err != nil || len(got) != 7 {
		t.Errorf("List with huge limit: %d jobs, err %v; want 7", len(got), err)
	}
	// Listed jobs are whole records.
	sameJob(t, "listed job", whole[0], created[6])
}

func testListOwnerIsolation(t *testing.T, s *jobstore.Store, b *bundle) {
	a := createSeries(t, s, b, "owner-a", 3)
	bb := createSeries(t, s, b, "owner-b", 2)
	a = append(a, createSeries(t, s, b, "owner-a", 2)...)

	gotA := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 2}, 5)
	if !equalStrings(ids(gotA), reversedIDs(a)) {
		t.Errorf("owner-a sees %v, want %v", ids(gotA), reversedIDs(a))
	}
	gotB := listAll(t, s, jobstore.ListQuery{Owner: "owner-b", Limit: 2}, 2)
	if !equalStrings(ids(gotB), reversedIDs(bb)) {
		t.Errorf("owner-b sees %v, want %v", ids(gotB), reversedIDs(bb))
	}
	none, next, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner-c", Limit: 10})
	if err != nil || len(none) != 0 || next != "" {
		t.Errorf("owner without jobs: %v next %q err %v; want empty", ids(none), next, err)
	}
	// A key prefix of another owner's id is not a match.
	if got, _, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner", Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("owner %q sees %v (err %v), want nothing", "owner", ids(got), err)
	}
	if _, _, err := s.List(ctxFor(t), jobstore.ListQuery{Limit: 10}); err == nil {
		t.Errorf("List without owner succeeded; want an error")
	}
}

func testListStatusFilter(t *testing.T, s *jobstore.Store, b *bundle) {
	created := createSeries(t, s, b, "owner-a", 6)
	other := createSeries(t, s, b, "owner-b", 1)
	// Jobs 1, 3, 4 run; 4 completes; owner-b's job runs too.
	for _, i := range []int{1, 3, 4} {
		mustApply(t, s, created[i].ID, jobs.Started("w"))
	}
	mustApply(t, s, created[4].ID, jobs.Completed(nil))
	mustApply(t, s, other[0].ID, jobs.Started("w"))

	running := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 1, Status: jobs.StatusRunning}, 6)
	if want := []string{created[3].ID, created[1].ID}; !equalStrings(ids(running), want) {
		t.Errorf("running jobs of owner-a = %v, want %v", ids(running), want)
	}
	for _, j := range running {
		if j.Status != jobs.StatusRunning {
			t.Errorf("status filter returned a %s job", j.Status)
		}
	}
	prov := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 2, Status: jobs.StatusProvisioning}, 6)
	if want := []string{created[5].ID, created[2].ID, created[0].ID}; !equalStrings(ids(prov), want) {
		t.Errorf("provisioning jobs of owner-a = %v, want %v", ids(prov), want)
	}
	done := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 5, Status: jobs.StatusCompleted}, 6)
	if want := []string{created[4].ID}; !equalStrings(ids(done), want) {
		t.Errorf("completed jobs of owner-a = %v, want %v", ids(done), want)
	}
	if got := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 5, Status: jobs.StatusCancelled}, 6); len(got) != 0 {
		t.Errorf("cancelled jobs of owner-a = %v, want none", ids(got))
	}
}

func testListSameInstant(t *testing.T, s *jobstore.Store, b *bundle) {
	// Jobs created within one clock tick still page without loss or repeat.
	var want []string
	for range 5 {
		want = append(want, mustCreate(t, s, sampleJob("owner-a")).ID)
	}
	got := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 2}, 5)
	seen := map[string]int{}
	for _, j := range got {
		seen[j.ID]++
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("job %s listed %d times, want once (listing %v)", id, seen[id], ids(got))
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %d jobs, want %d", len(got), len(want))
	}
}

func testListInvalidCursor(t *testing.T, s *jobstore.Store, b *bundle) {
	createSeries(t, s, b, "owner-a", 3)
	for _, c := range []string{"not-a-cursor", "%%%", "eyJ4IjoxfQ"} {
		_, _, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner-a", Limit: 1, Cursor: c})
		if !errors.Is(err, jobstore.ErrInvalidCursor) {
			t.Errorf("List with cursor %q: err = %v, want ErrInvalidCursor", c, err)
		}
	}
}

func testActive(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	if got, err := s.Active(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Active on an empty store: %v, %v", ids(got), err)
	}
	a := createSeries(t, s, b, "owner-a", 4)
	o := createSeries(t, s, b, "owner-b", 2)
	mustApply(t, s, a[0].ID, jobs.Started("w1"))
	mustApply(t, s, a[1].ID, jobs.Started("w2"))
	mustApply(t, s, a[1].ID, jobs.Completed(nil))
	mustApply(t, s, a[2].ID, jobs.Failed("could not provision"))
	mustApply(t, s, o[0].ID, jobs.Cancelled())
	mustApply(t, s, o[1].ID, jobs.Started("w3"))
	mustApply(t, s, o[1].ID, jobs.TimedOut(time.Hour))

	got, err := s.Active(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a[0].ID, a[3].ID}; !equalStrings(ids(got), want) {
		t.Errorf("Active = %v, want the running and the provisioning job oldest first %v", ids(got), want)
	}
	for _, j := range got {
		if !j.Status.Active() {
			t.Errorf("Active returned a %s job", j.Status)
		}
	}
}

func testLifecycle(t *testing.T, s *jobstore.Store, b *bundle) {
	t0 := b.clock.Now()
	j := mustCreate(t, s, sampleJob("owner-a"))

	t1 := b.clock.Advance(5 * time.Second)
	j = mustApply(t, s, j.ID, jobs.Provisioned("i-0abc", "t3.medium", "https://logs.example/job"))
	if j.Status != jobs.StatusProvisioning || j.WorkerID != "i-0abc" || j.InstanceType != "t3.medium" ||
		j.Attempts != 1 || j.LogURL != "https://logs.example/job" || j.HeartbeatAt == nil || !j.HeartbeatAt.Equal(t1) {
		t.Errorf("after Provisioned: %+v", j)
	}
	if len(j.History) != 1 || j.Version != 2 || !j.UpdatedAt.Equal(t1) {
		t.Errorf("after Provisioned: history %d entries, version %d, updated %v", len(j.History), j.Version, j.UpdatedAt)
	}

	t2 := b.clock.Advance(30 * time.Second)
	j = mustApply(t, s, j.ID, jobs.Started("i-0abc"))
	if j.Status != jobs.StatusRunning || j.StartedAt == nil || !j.StartedAt.Equal(t2) {
		t.Errorf("after Started: status %s started_at %v, want running at %v", j.Status, j.StartedAt, t2)
	}

	t3 := b.clock.Advance(time.Minute)
	p := jobs.Progress{Phase: "copy", CurrentDatabase: "app", DatabasesCompleted: 1, DatabasesTotal: 2, BytesCopied: 1 << 20}
	j = mustApply(t, s, j.ID, jobs.Heartbeat(&p))
	if j.Progress != p || !j.HeartbeatAt.Equal(t3) {
		t.Errorf("after Heartbeat: progress %+v heartbeat %v", j.Progress, j.HeartbeatAt)
	}

	t4 := b.clock.Advance(time.Hour)
	final := jobs.Progress{Phase: "done", DatabasesCompleted: 2, DatabasesTotal: 2}
	j = mustApply(t, s, j.ID, jobs.Completed(&final))
	if j.Status != jobs.StatusCompleted || j.CompletedAt == nil || !j.CompletedAt.Equal(t4) || j.Progress != final {
		t.Errorf("after Completed: %+v", j)
	}
	if j.Version != 5 {
		t.Errorf("version after 4 updates = %d, want 5", j.Version)
	}

	read := mustGet(t, s, j.ID)
	sameJob(t, "stored job after completion", read, j)
	wantHist := []struct {
		s  jobs.Status
		at time.Time
	}{{jobs.StatusProvisioning, t0}, {jobs.StatusRunning, t2}, {jobs.StatusCompleted, t4}}
	if len(read.History) != len(wantHist) {
		t.Fatalf("history = %+v, want %d entries", read.History, len(wantHist))
	}
	for i, w := range wantHist {
		if read.History[i].Status != w.s || !read.History[i].At.Equal(w.at) {
			t.Errorf("history[%d] = %s at %v, want %s at %v", i, read.History[i].Status, read.History[i].At, w.s, w.at)
		}
	}
	if !read.CreatedAt.Equal(t0) || !read.StartedAt.Equal(t2) || !read.CompletedAt.Equal(t4) || !read.UpdatedAt.Equal(t4) {
		t.Errorf("timestamps created %v started %v completed %v updated %v", read.CreatedAt, read.StartedAt, read.CompletedAt, read.UpdatedAt)
	}
	if !read.ExpiresAt.Equal(t0.Add(jobs.Retention)) {
		t.Errorf("expires_at moved to %v", read.ExpiresAt)
	}
}

func testRequeue(t *testing.T, s *jobstore.Store, b *bundle) {
	j := mustCreate(t, s, sampleJob("owner-a"))
	mustApply(t, s, j.ID, jobs.Provisioned("pid-1", "local", ""))
	t1 := b.clock.Advance(time.Second)
	mustApply(t, s, j.ID, jobs.Started("pid-1"))
	b.clock.Advance(10 * time.Minute)
	j = mustApply(t, s, j.ID, jobs.Requeued("worker pid-1 stopped heartbeating"))
	if j.Status != jobs.StatusProvisioning || j.WorkerID != "" || j.HeartbeatAt != nil {
		t.Errorf("after Requeued: status %s worker %q heartbeat %v", j.Status, j.WorkerID, j.HeartbeatAt)
	}
	last := j.History[len(j.History)-1]
	if last.Status != jobs.StatusProvisioning || last.Reason != "worker pid-1 stopped heartbeating" {
		t.Errorf("requeue not recorded with its reason: %+v", last)
	}
	mustApply(t, s, j.ID, jobs.Provisioned("pid-2", "local", ""))
	b.clock.Advance(time.Second)
	j = mustApply(t, s, j.ID, jobs.Started("pid-2"))
	if j.Attempts != 2 || j.WorkerID != "pid-2" || !j.StartedAt.Equal(t1) {
		t.Errorf("after restart: attempts %d worker %q started_at %v (want 2, pid-2, first start %v)", j.Attempts, j.WorkerID, j.StartedAt, t1)
	}
	sameJob(t, "stored", mustGet(t, s, j.ID), j)
}

func testIllegalTransitions(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	j := mustCreate(t, s, sampleJob("owner-a"))

	// Not in the expected state: a provisioning job cannot complete.
	cur, err := s.Apply(ctx, j.ID, jobs.Completed(nil))
	if !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("Completed on a provisioning job: err = %v, want ErrConflict", err)
	}
	if cur == nil || cur.Status != jobs.StatusProvisioning {
		t.Errorf("Apply did not return the current job with the refusal: %+v", cur)
	}
	if _, err := s.Apply(ctx, j.ID, jobs.Heartbeat(nil)); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("Heartbeat on a provisioning job: err = %v, want ErrConflict", err)
	}
	if _, err := s.Apply(ctx, j.ID, jobs.Requeued("x")); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("Requeued on a provisioning job: err = %v, want ErrConflict", err)
	}
	// A transition outside the state machine is refused even when the job
	// is in its From state.
	bogus := jobs.Transition{From: []jobs.Status{jobs.StatusProvisioning}, To: jobs.StatusCompleted}
	if _, err := s.Apply(ctx, j.ID, bogus); !errors.Is(err, jobs.ErrIllegalTransition) {
		t.Errorf("provisioning → completed: err = %v, want ErrIllegalTransition", err)
	}
	if got := mustGet(t, s, j.ID); got.Version != 1 || got.Status != jobs.StatusProvisioning || len(got.History) != 1 {
		t.Errorf("refused transitions changed the job: version %d status %s history %d", got.Version, got.Status, len(got.History))
	}

	mustApply(t, s, j.ID, jobs.Cancelled())
	for _, tr := range []jobs.Transition{jobs.Started("w"), jobs.Completed(nil), jobs.Failed("late"), jobs.Cancelled(),
		jobs.TimedOut(time.Minute), jobs.Provisioned("w", "t", ""), jobs.Heartbeat(nil), jobs.Requeued("x")} {
		if _, err := s.Apply(ctx, j.ID, tr); !errors.Is(err, jobs.ErrConflict) {
			t.Errorf("%s on a cancelled job: err = %v, want ErrConflict", tr.To, err)
		}
	}
	bogus = jobs.Transition{From: []jobs.Status{jobs.StatusCancelled}, To: jobs.StatusRunning}
	if _, err := s.Apply(ctx, j.ID, bogus); !errors.Is(err, jobs.ErrIllegalTransition) {
		t.Errorf("cancelled → running: err = %v, want ErrIllegalTransition", err)
	}
	got := mustGet(t, s, j.ID)
	if got.Status != jobs.StatusCancelled || got.Version != 2 || got.Error != "cancelled by user" {
		t.Errorf("cancelled job changed: status %s version %d error %q", got.Status, got.Version, got.Error)
	}
}

func testPutCompareAndSet(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	j := mustCreate(t, s, sampleJob("owner-a"))

	stale := *j
	stale.Version = 2
	stale.Error = "written with a stale version"
	mustApply(t, s, j.ID, jobs.Provisioned("w", "t", "")) // now version 2
	if err := b.driver.Put(ctx, &stale, jobstore.Expect{Version: 1}); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("Put expecting version 1 of a version-2 job: err = %v, want ErrConflict", err)
	}
	if got := mustGet(t, s, j.ID); got.Error != "" || got.Version != 2 {
		t.Errorf("a conflicting Put changed the job: error %q version %d", got.Error, got.Version)
	}

	ghost := *j
	ghost.ID = "job-that-was-never-created"
	ghost.Version = 2
	err := b.driver.Put(ctx, &ghost, jobstore.Expect{Version: 1})
	if !errors.Is(err, jobs.ErrNotFound) && !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("Put of a missing job: err = %v, want ErrNotFound or ErrConflict", err)
	}
	if _, err := s.Get(ctx, ghost.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Put created a job that did not exist (Get err = %v)", err)
	}
}

// testStaleWorker: worker A's job is re-queued and handed to worker B;
// every write A still makes (progress, complete, fail, timeout) is refused,
// and the job's end is B's.
func testStaleWorker(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	j := mustCreate(t, s, sampleJob("owner-a"))
	j = mustApply(t, s, j.ID, jobs.Provisioned("worker-a", "local", ""))
	leaseA := jobs.LeaseOf(j)
	if leaseA != (jobs.Lease{WorkerID: "worker-a", Attempt: 1}) {
		t.Fatalf("lease after the first launch = %+v", leaseA)
	}
	mustApply(t, s, j.ID, jobs.Started("worker-a").By(leaseA))
	p := jobs.Progress{Phase: "copy", TablesCompleted: 1}
	mustApply(t, s, j.ID, jobs.Heartbeat(&p).By(leaseA))

	// The service loses patience: re-queue, relaunch on B, B starts.
	mustApply(t, s, j.ID, jobs.Requeued("worker-a stopped heartbeating"))
	// Before B is recorded, A's writes are refused too.
	if _, err := s.Apply(ctx, j.ID, jobs.Heartbeat(&p).By(leaseA)); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("stale heartbeat on a re-queued job: err = %v, want ErrConflict", err)
	}
	j = mustApply(t, s, j.ID, jobs.Provisioned("worker-b", "local", ""))
	leaseB := jobs.LeaseOf(j)
	if _, err := s.Apply(ctx, j.ID, jobs.Started("worker-a").By(leaseA)); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("stale start: err = %v, want ErrConflict", err)
	}
	j = mustApply(t, s, j.ID, jobs.Started("worker-b").By(leaseB))
	before := j.Version

	stale := jobs.Progress{Phase: "stale", TablesCompleted: 99}
	for _, tr := range []jobs.Transition{jobs.Heartbeat(&stale), jobs.Completed(&stale), jobs.Failed("stale worker failed"),
		jobs.TimedOut(time.Minute)} {
		cur, err := s.Apply(ctx, j.ID, tr.By(leaseA))
		if !errors.Is(err, jobs.ErrLeaseLost) || !errors.Is(err, jobs.ErrConflict) {
			t.Errorf("stale worker's %s: err = %v, want ErrLeaseLost (an ErrConflict)", tr.To, err)
		}
		if cur == nil || cur.WorkerID != "worker-b" || cur.Status != jobs.StatusRunning {
			t.Errorf("stale worker's %s: the refusal did not return the job as it is: %+v", tr.To, cur)
		}
	}
	// Same worker id, older attempt (a pid reused by the relaunch): refused.
	if _, err := s.Apply(ctx, j.ID, jobs.Completed(&stale).By(jobs.Lease{WorkerID: "worker-b", Attempt: 1})); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Errorf("complete with an older attempt of the same worker: err = %v, want ErrLeaseLost", err)
	}
	if got := mustGet(t, s, j.ID); got.Version != before || got.Status != jobs.StatusRunning || got.Progress == stale {
		t.Errorf("stale writes changed the job: version %d (want %d) status %s progress %+v", got.Version, before, got.Status, got.Progress)
	}

	final := jobs.Progress{Phase: "done", TablesCompleted: 3}
	done := mustApply(t, s, j.ID, jobs.Completed(&final).By(leaseB))
	if done.Status != jobs.StatusCompleted || done.Progress != final || done.WorkerID != "worker-b" || done.Error != "" {
		t.Errorf("B's completion: %+v", done)
	}
	// And nothing A sends afterwards changes the ended job.
	if _, err := s.Apply(ctx, j.ID, jobs.Failed("late").By(leaseA)); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("stale fail of the completed job: err = %v, want ErrConflict", err)
	}
	sameJob(t, "stored after B completed", mustGet(t, s, j.ID), done)
}

// testPutFenced: the driver's own conditional write checks the lease, not
// only Store.Apply's read-then-check.
func testPutFenced(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	j := mustCreate(t, s, sampleJob("owner-a"))
	j = mustApply(t, s, j.ID, jobs.Provisioned("worker-b", "local", ""))
	j = mustApply(t, s, j.ID, jobs.Started("worker-b").By(jobs.LeaseOf(j)))

	for _, lease := range []jobs.Lease{{WorkerID: "worker-a", Attempt: 1}, {WorkerID: "worker-b", Attempt: 2}, {WorkerID: "worker-b", Attempt: 0}} {
		w := *j
		w.Version = j.Version + 1
		w.Status = jobs.StatusCompleted
		w.Error = "written by a worker that lost the job"
		if err := b.driver.Put(ctx, &w, jobstore.Expect{Version: j.Version, Lease: &lease}); !errors.Is(err, jobs.ErrConflict) {
			t.Errorf("Put fenced on %+v of a job held by worker-b attempt 1: err = %v, want ErrConflict", lease, err)
		}
	}
	if got := mustGet(t, s, j.ID); got.Version != j.Version || got.Status != jobs.StatusRunning || got.Error != "" {
		t.Errorf("a fenced Put by the wrong worker changed the job: version %d status %s error %q", got.Version, got.Status, got.Error)
	}
	w := *j
	w.Version = j.Version + 1
	w.Progress = jobs.Progress{Phase: "held"}
	lease := jobs.LeaseOf(j)
	if err := b.driver.Put(ctx, &w, jobstore.Expect{Version: j.Version, Lease: &lease}); err != nil {
		t.Errorf("Put fenced on the holding worker: %v", err)
	}
	if got := mustGet(t, s, j.ID); got.Progress.Phase != "held" {
		t.Errorf("the holder's fenced Put was not stored: %+v", got.Progress)
	}
}

func testConcurrentTerminal(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	for round := range 10 {
		j := mustCreate(t, s, sampleJob("owner-a"))
		mustApply(t, s, j.ID, jobs.Started("w"))
		trs := []jobs.Transition{jobs.Completed(nil), jobs.Cancelled(), jobs.Failed("worker crashed"), jobs.TimedOut(time.Hour)}
		errs := make([]error, len(trs))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, tr := range trs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = s.Apply(ctx, j.ID, tr)
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		var winner jobs.Status
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
				winner = trs[i].To
			case errors.Is(err, jobs.ErrConflict):
			default:
				t.Fatalf("round %d: %s: unexpected error %v", round, trs[i].To, err)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d terminal transitions succeeded, want exactly 1 (errors %v)", round, winners, errs)
		}
		got := mustGet(t, s, j.ID)
		if got.Status != winner {
			t.Errorf("round %d: stored status %s, winner %s", round, got.Status, winner)
		}
		terminal := 0
		for _, h := range got.History {
			if h.Status.Terminal() {
				terminal++
			}
		}
		if terminal != 1 || got.Version != 3 {
			t.Errorf("round %d: %d terminal history entries, version %d; want 1 and 3", round, terminal, got.Version)
		}
	}
}

func testConcurrentWriters(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	j := mustCreate(t, s, sampleJob("owner-a"))
	const writers, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				if _, err := s.Apply(ctx, j.ID, jobs.Provisioned(fmt.Sprintf("w%d-%d", w, i), "t", "")); err != nil {
					errs <- err
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		t.Errorf("concurrent Apply: %v", err)
	}
	got := mustGet(t, s, j.ID)
	ok := writers*each - failed
	if got.Attempts != ok {
		t.Errorf("attempts = %d after %d successful increments: an update was lost", got.Attempts, ok)
	}
	if got.Version != int64(1+ok) {
		t.Errorf("version = %d after %d successful updates, want %d", got.Version, ok, 1+ok)
	}
}

func testCredentials(t *testing.T, s *jobstore.Store, b *bundle) {
	blob := make([]byte, 0, 1024)
	for i := range 1024 {
		blob = append(blob, byte(i*7+i/256))
	}
	blob = append(blob, 0, 0, 0xff, 0xfe, '"', '\\', '\n')
	in := sampleJob("owner-a")
	in.Credentials = blob
	j := mustCreate(t, s, in)
	if got := mustGet(t, s, j.ID); !bytes.Equal(got.Credentials, blob) {
		t.Fatalf("credentials after Create differ (%d bytes, want %d)", len(got.Credentials), len(blob))
	}
	mustApply(t, s, j.ID, jobs.Started("w"))
	p := jobs.Progress{TablesCompleted: 3}
	mustApply(t, s, j.ID, jobs.Heartbeat(&p))
	if got := mustGet(t, s, j.ID); !bytes.Equal(got.Credentials, blob) {
		t.Fatalf("credentials after updates differ")
	}
	if page, _, err := s.List(ctxFor(t), jobstore.ListQuery{Owner: "owner-a", Limit: 5}); err != nil || len(page) != 1 || !bytes.Equal(page[0].Credentials, blob) {
		t.Errorf("listed job: err %v, %d jobs, credentials equal %v", err, len(page), len(page) == 1 && bytes.Equal(page[0].Credentials, blob))
	}
	// The blob is not part of the JSON form of the job.
	raw, err := json.Marshal(mustGet(t, s, j.ID))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("credentials")) {
		t.Errorf("job JSON mentions credentials: %s", raw)
	}

	// An ended job keeps no credentials.
	mustApply(t, s, j.ID, jobs.Completed(nil))
	if got := mustGet(t, s, j.ID); len(got.Credentials) != 0 {
		t.Errorf("completed job still holds %d bytes of sealed credentials", len(got.Credentials))
	}

	none := sampleJob("owner-a")
	none.Credentials = nil
	nj := mustCreate(t, s, none)
	if got := mustGet(t, s, nj.ID); len(got.Credentials) != 0 {
		t.Errorf("job without credentials reads back %d bytes", len(got.Credentials))
	}
}

func testExpiry(t *testing.T, s *jobstore.Store, b *bundle) {
	ctx := ctxFor(t)
	old := mustCreate(t, s, sampleJob("owner-a"))
	oldRunning := mustCreate(t, s, sampleJob("owner-b"))
	mustApply(t, s, oldRunning.ID, jobs.Started("w"))
	b.clock.Advance(10 * 24 * time.Hour)
	young := mustCreate(t, s, sampleJob("owner-a"))

	if n, err := s.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("Purge before anything expired: %d, %v; want 0", n, err)
	}
	b.clock.Advance(jobs.Retention - 10*24*time.Hour + time.Second) // just past old.ExpiresAt
	if _, err := s.Get(ctx, old.ID); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("Get of an expired job: err = %v, want ErrNotFound", err)
	}
	page := listAll(t, s, jobstore.ListQuery{Owner: "owner-a", Limit: 10}, 2)
	if !equalStrings(ids(page), []string{young.ID}) {
		t.Errorf("List after expiry = %v, want only %s", ids(page), young.ID)
	}
	if act, err := s.Active(ctx); err != nil || !equalStrings(ids(act), []string{young.ID}) {
		t.Errorf("Active after expiry = %v (err %v), want only %s", ids(act), err, young.ID)
	}

	n, err := s.Purge(ctx)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if n != 2 && !(b.opts.ExpiresItself && n == 0) {
		t.Errorf("Purge removed %d jobs, want the 2 expired ones", n)
	}
	if n == 2 {
		for _, id := range []string{old.ID, oldRunning.ID} {
			if _, err := b.driver.Get(ctx, id); !errors.Is(err, jobs.ErrNotFound) {
				t.Errorf("purged job %s still in the backend (err %v)", id, err)
			}
		}
	}
	sameJob(t, "unexpired job after purge", mustGet(t, s, young.ID), young)
	if n, err := s.Purge(ctx); err != nil || n != 0 {
		t.Errorf("second Purge: %d, %v; want 0", n, err)
	}
}
