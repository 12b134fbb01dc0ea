package cwlog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/cwlog"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog/joblogtest"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

type bundle struct {
	cfg    aws.Config
	client *cloudwatchlogs.Client
	group  string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	cfg := awstest.Config(t, awstest.CloudWatchLogs)
	b := &bundle{cfg: cfg, client: cloudwatchlogs.NewFromConfig(cfg), group: "/aws/ec2/" + awstest.Name(t, "worker")}
	if err := cwlog.CreateGroup(context.Background(), b.client, b.group); err != nil {
		t.Fatal(err)
	}
	if err := cwlog.CreateGroup(context.Background(), b.client, b.group); err != nil {
		t.Fatalf("CreateGroup is not idempotent: %v", err)
	}
	return b
}

func (b *bundle) log(t *testing.T, stream string) *cwlog.Log {
	t.Helper()
	l, err := cwlog.NewFromConfig(b.cfg, cwlog.Options{Group: b.group, Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func lines(texts ...string) []joblog.Line {
	out := make([]joblog.Line, len(texts))
	base := time.Now().Add(-time.Minute)
	for i, s := range texts {
		out[i] = joblog.Line{Time: base.Add(time.Duration(i) * time.Millisecond), Text: s}
	}
	return out
}

func texts(ls []joblog.Line) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = fmt.Sprintf("%d:%s", l.Seq, l.Text)
	}
	return out
}

func wantLines(t *testing.T, got []joblog.Line, want ...string) {
	t.Helper()
	if g := strings.Join(texts(got), "|"); g != strings.Join(want, "|") {
		t.Fatalf("lines:\n got %s\nwant %s", g, strings.Join(want, "|"))
	}
}

func TestAppendAndRead(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	w := b.log(t, "i-0aaa")
	const job = "6f1c2a52-0d4e-4c1e-9a55-1c1e0f7a0001"
	if err := w.Append(ctx, job, lines("[TRACE:tr-1] starting", "[TRACE:tr-1] copied public.a", "[TRACE:tr-1] done")); err != nil {
		t.Fatalf("Append: %v", err)
	}

	got, err := w.Read(ctx, job, 0, 100)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	wantLines(t, got, "1:[TRACE:tr-1] starting", "2:[TRACE:tr-1] copied public.a", "3:[TRACE:tr-1] done")

	got, _ = w.Read(ctx, job, 1, 1)
	wantLines(t, got, "2:[TRACE:tr-1] copied public.a")
	got, _ = w.Read(ctx, job, 3, 10)
	wantLines(t, got)

	// Follow: a later append is seen after the last seq read.
	if err := w.Append(ctx, job, lines("[TRACE:tr-1] more")); err != nil {
		t.Fatal(err)
	}
	got, _ = w.Read(ctx, job, 3, 10)
	wantLines(t, got, "4:[TRACE:tr-1] more")

	// The stored event is JSON with the fields the guide's Insights queries use.
	ev, err := b.client.GetLogEvents(ctx, &cloudwatchlogs.GetLogEventsInput{
		LogGroupName: aws.String(b.group), LogStreamName: aws.String(cwlog.StreamName(job, "i-0aaa")), StartFromHead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Events) != 4 {
		t.Fatalf("stream i-0aaa has %d events, want 4", len(ev.Events))
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(ev.Events[0].Message)), &rec); err != nil {
		t.Fatalf("event is not JSON: %v", err)
	}
	if rec["job_id"] != job || rec["trace_id"] != "tr-1" || rec["msg"] != "[TRACE:tr-1] starting" || rec["seq"] != float64(1) {
		t.Fatalf("event = %v", rec)
	}
}

func TestJobsAreSeparate(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	w1, w2 := b.log(t, "i-0111"), b.log(t, "i-0222")
	if err := w1.Append(ctx, "job-one", lines("one a", "one b")); err != nil {
		t.Fatal(err)
	}
	if err := w2.Append(ctx, "job-two", lines("two a")); err != nil {
		t.Fatal(err)
	}
	// A job whose id is a prefix of another's must not see its lines.
	if err := w2.Append(ctx, "job-one-extra", lines("extra")); err != nil {
		t.Fatal(err)
	}
	reader := b.log(t, "")
	got, err := reader.Read(ctx, "job-one", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, got, "1:one a", "2:one b")
	got, _ = reader.Read(ctx, "job-two", 0, 100)
	wantLines(t, got, "1:two a")
	got, _ = reader.Read(ctx, "job-unknown", 0, 100)
	wantLines(t, got)
}

func TestResumedJobContinuesOnNewWorker(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	const job = "job-resumed"
	if err := b.log(t, "i-first").Append(ctx, job, lines("first 1", "first 2")); err != nil {
		t.Fatal(err)
	}
	second := b.log(t, "i-second")
	later := []joblog.Line{{Time: time.Now(), Text: "second 1"}}
	if err := second.Append(ctx, job, later); err != nil {
		t.Fatal(err)
	}
	got, err := second.Read(ctx, job, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, got, "1:first 1", "2:first 2", "3:second 1")

	// With a stream resolver, Read looks only at the job's workers.
	onlySecond, err := cwlog.NewFromConfig(b.cfg, cwlog.Options{Group: b.group,
		Streams: func(context.Context, string) ([]string, error) {
			return []string{cwlog.StreamName(job, "i-second")}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = onlySecond.Read(ctx, job, 0, 10)
	wantLines(t, got, "3:second 1")
	none, _ := cwlog.NewFromConfig(b.cfg, cwlog.Options{Group: b.group,
		Streams: func(context.Context, string) ([]string, error) {
			return []string{cwlog.StreamName(job, "i-not-started")}, nil
		}})
	if got, err := none.Read(ctx, job, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("Read of a worker without stream = %v, %v; want no lines", got, err)
	}
}

func TestExplicitSeqAndLongLines(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	w := b.log(t, "i-0seq")
	long := strings.Repeat("x", 300*1024)
	if err := w.Append(ctx, "job-seq", []joblog.Line{{Seq: 10, Text: "ten"}, {Text: long}}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	got, err := w.Read(ctx, "job-seq", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 10 || got[1].Seq != 11 || !strings.HasSuffix(got[1].Text, "[truncated]") || len(got[1].Text) > 256*1024 {
		t.Fatalf("got %d lines: seqs %v", len(got), texts(got)[:min(1, len(got))])
	}
}

func TestManyLinesAreBatched(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	w := b.log(t, "i-0many")
	var ls []joblog.Line
	base := time.Now().Add(-time.Hour)
	for i := 0; i < 12000; i++ { // more than one PutLogEvents batch
		ls = append(ls, joblog.Line{Time: base.Add(time.Duration(i) * time.Millisecond), Text: fmt.Sprintf("line %d", i+1)})
	}
	if err := w.Append(ctx, "job-many", ls); err != nil {
		t.Fatalf("Append: %v", err)
	}
	got, err := w.Read(ctx, "job-many", 11990, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, got, "11991:line 11991", "11992:line 11992", "11993:line 11993", "11994:line 11994", "11995:line 11995")
}

func TestErrors(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	if err := b.log(t, "").Append(ctx, "job", lines("x")); err == nil {
		t.Error("Append without a stream succeeded")
	}
	if err := b.log(t, "i-1").Append(ctx, `job" OR "x`, lines("x")); err == nil {
		t.Error("Append with a job id that could inject a filter pattern succeeded")
	}
	missing, _ := cwlog.NewFromConfig(b.cfg, cwlog.Options{Group: b.group + "-missing", Stream: "i-1"})
	err := missing.Append(ctx, "job", lines("x"))
	if err == nil || hint.Of(err) == "" {
		t.Errorf("Append to a missing group = %v; want an error with a hint", err)
	}
}

func TestURL(t *testing.T) {
	l, err := cwlog.New(&cloudwatchlogs.Client{}, cwlog.Options{Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ worker, want string }{
		{"i-0abc123", "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Faws$252Fec2$252Fseren-replication-worker/log-events/job$252Fi-0abc123"},
		{"", "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Faws$252Fec2$252Fseren-replication-worker"},
		{"a/b c", "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Faws$252Fec2$252Fseren-replication-worker/log-events/job$252Fa$252Fb$2520c"},
	} {
		if got := l.URL("job", tc.worker); got != tc.want {
			t.Errorf("URL(%q):\n got %s\nwant %s", tc.worker, got, tc.want)
		}
	}
}

func TestConformance(t *testing.T) {
	b := setup(t)
	joblogtest.Run(t, func(t *testing.T) joblog.Log {
		l, err := cwlog.NewFromConfig(b.cfg, cwlog.Options{Group: b.group, Stream: "i-" + awstest.Name(t, "w")})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// filterCalls records the FilterLogEvents requests a client sends.
type filterCalls struct {
	mu     sync.Mutex
	bodies []map[string]any
}

func (f *filterCalls) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".FilterLogEvents") {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		f.mu.Lock()
		f.bodies = append(f.bodies, m)
		f.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// Reading a job's log searches only that job's streams ("<job>/<worker>"),
// never the whole group: a group-wide scan grows with retention and every
// other job's lines, and could outrun the API's 29 s.
func TestReadIsScopedToTheJobsStreams(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	if err := b.log(t, "i-a1").Append(ctx, "job-a", lines("a one")); err != nil {
		t.Fatal(err)
	}
	if err := b.log(t, "i-a2").Append(ctx, "job-a", lines("a two")); err != nil {
		t.Fatal(err)
	}
	if err := b.log(t, "i-b1").Append(ctx, "job-b", lines("b mentions job-a")); err != nil {
		t.Fatal(err)
	}
	calls := &filterCalls{}
	cfg := b.cfg.Copy()
	cfg.HTTPClient = &http.Client{Transport: calls}
	reader, err := cwlog.NewFromConfig(cfg, cwlog.Options{Group: b.group})
	if err != nil {
		t.Fatal(err)
	}
	got, err := reader.Read(ctx, "job-a", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, got, "1:a one", "2:a two")
	if len(calls.bodies) == 0 {
		t.Fatal("no FilterLogEvents request")
	}
	for _, body := range calls.bodies {
		var names []string
		list, _ := body["logStreamNames"].([]any)
		for _, n := range list {
			names = append(names, n.(string))
		}
		sort.Strings(names)
		want := []string{cwlog.StreamName("job-a", "i-a1"), cwlog.StreamName("job-a", "i-a2")}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("FilterLogEvents searched streams %v; want only the job's %v", names, want)
		}
	}
	if got, err := reader.Read(ctx, "job-none", 0, 10); err != nil || len(got) != 0 {
		t.Errorf("Read of a job without streams = %v, %v", got, err)
	}
}
