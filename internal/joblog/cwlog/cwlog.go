// Package cwlog is the AWS joblog.Log: worker log lines go to CloudWatch
// Logs, group /aws/ec2/seren-replication-worker by default, one stream per
// worker (its EC2 instance id), and are read back for the API's
// /jobs/{id}/logs from the same group.
//
// Each event's message is one JSON object, so CloudWatch Logs Insights
// discovers the fields the guide's queries use:
//
//	{"job_id":"…","trace_id":"…","seq":12,"msg":"[TRACE:…] copied table public.orders"}
//
// trace_id is taken from the line's [TRACE:<id>] tag when present. seq
// orders a job's lines across workers (a lost worker's job is resumed by a
// new instance, i.e. a new stream).
package cwlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
)

// DefaultGroup is the guide's worker log group.
const DefaultGroup = "/aws/ec2/seren-replication-worker"

// PutLogEvents limits (bytes count message + 26 per event).
const (
	maxBatchEvents = 10000
	maxBatchBytes  = 1048576
	eventOverhead  = 26
	// maxMessage keeps one event well under the 256 KiB event limit.
	maxMessage = 200 * 1024
)

// API is the part of the CloudWatch Logs client the log uses.
type API interface {
	CreateLogStream(ctx context.Context, in *cloudwatchlogs.CreateLogStreamInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogStreamOutput, error)
	PutLogEvents(ctx context.Context, in *cloudwatchlogs.PutLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.PutLogEventsOutput, error)
	cloudwatchlogs.FilterLogEventsAPIClient
	cloudwatchlogs.DescribeLogStreamsAPIClient
}

// Options configure a Log.
type Options struct {
	// Group is the log group (default DefaultGroup). Terraform creates it
	// with its retention; CreateGroup does it for tests and local use.
	Group string
	// Stream is this worker's name (its instance id); needed to Append.
	// A job's lines go to the stream "<job id>/<Stream>" (StreamName), so
	// a job's streams are found by prefix and reads never scan the group.
	Stream string
	// Region builds the console URL.
	Region string
	// Streams optionally names the streams holding a job's lines; nil
	// lists the streams named "<job id>/" (DescribeLogStreams by prefix).
	Streams func(ctx context.Context, jobID string) ([]string, error)
}

// Log reads and writes job log lines in CloudWatch Logs.
type Log struct {
	api  API
	opts Options

	mu            sync.Mutex
	streamCreated map[string]bool
	lastSeq       map[string]int64 // job → last seq appended by this process
	// resume remembers, per job, the timestamp of the newest line Read
	// returned, so following a log does not re-scan it from the start.
	resume map[string]resumePoint
}

type resumePoint struct {
	seq int64
	ts  int64 // ms
}

const maxResumePoints = 1000

var _ joblog.Log = (*Log)(nil)

// New returns a Log.
func New(api API, opts Options) (*Log, error) {
	if api == nil {
		return nil, errors.New("cwlog: nil CloudWatch Logs client")
	}
	if opts.Group == "" {
		opts.Group = DefaultGroup
	}
	return &Log{api: api, opts: opts, lastSeq: map[string]int64{}, resume: map[string]resumePoint{}, streamCreated: map[string]bool{}}, nil
}

// NewFromConfig builds the client from cfg (config.LoadDefaultConfig, so
// AWS_ENDPOINT_URL_CLOUDWATCH_LOGS is honoured); Region defaults to cfg's.
func NewFromConfig(cfg aws.Config, opts Options) (*Log, error) {
	if opts.Region == "" {
		opts.Region = cfg.Region
	}
	return New(cloudwatchlogs.NewFromConfig(cfg), opts)
}

// CreateGroup creates a log group unless it exists (tests, local use;
// Terraform owns it in production).
func CreateGroup(ctx context.Context, api interface {
	CreateLogGroup(context.Context, *cloudwatchlogs.CreateLogGroupInput, ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.CreateLogGroupOutput, error)
}, group string) error {
	_, err := api.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(group)})
	var exists *types.ResourceAlreadyExistsException
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("create log group %s: %w", group, err)
	}
	return nil
}

// record is one event's message.
type record struct {
	JobID   string `json:"job_id"`
	TraceID string `json:"trace_id,omitempty"`
	Seq     int64  `json:"seq"`
	Msg     string `json:"msg"`
}

// traceOf extracts <id> from a "[TRACE:<id>]" tag.
func traceOf(text string) string {
	i := strings.Index(text, "[TRACE:")
	if i < 0 {
		return ""
	}
	rest := text[i+len("[TRACE:"):]
	j := strings.IndexByte(rest, ']')
	if j <= 0 || j > 64 {
		return ""
	}
	return rest[:j]
}

func validJobID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("invalid job id %q", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("invalid job id %q", id)
		}
	}
	return nil
}

// Append writes lines to this worker's stream. Lines with Seq 0 are
// numbered after the job's last line (read once from CloudWatch when this
// process has not appended for the job yet). Zero times become now.
func (l *Log) Append(ctx context.Context, jobID string, lines []joblog.Line) error {
	if len(lines) == 0 {
		return nil
	}
	if err := validJobID(jobID); err != nil {
		return err
	}
	if l.opts.Stream == "" {
		return errors.New("cwlog: Append needs the worker's stream name (its instance id)")
	}
	stream := StreamName(jobID, l.opts.Stream)
	if err := l.ensureStream(ctx, stream); err != nil {
		return err
	}
	last, err := l.lastSeqFor(ctx, jobID)
	if err != nil {
		return err
	}

	now := time.Now()
	events := make([]types.InputLogEvent, 0, len(lines))
	var prevTS int64
	for _, ln := range lines {
		seq := ln.Seq
		if seq == 0 {
			seq = last + 1
		}
		if seq > last {
			last = seq
		}
		msg := ln.Text
		if len(msg) > maxMessage {
			msg = msg[:maxMessage] + "…[truncated]"
		}
		body, err := json.Marshal(record{JobID: jobID, TraceID: traceOf(ln.Text), Seq: seq, Msg: msg})
		if err != nil {
			return fmt.Errorf("encode log line: %w", err)
		}
		t := ln.Time
		if t.IsZero() {
			t = now
		}
		ts := t.UnixMilli()
		if ts < prevTS { // a batch must be in time order
			ts = prevTS
		}
		prevTS = ts
		events = append(events, types.InputLogEvent{Message: aws.String(string(body)), Timestamp: aws.Int64(ts)})
	}

	for len(events) > 0 {
		n, size := 0, 0
		for n < len(events) && n < maxBatchEvents {
			s := len(aws.ToString(events[n].Message)) + eventOverhead
			if n > 0 && size+s > maxBatchBytes {
				break
			}
			size += s
			n++
		}
		out, err := l.api.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{
			LogGroupName:  aws.String(l.opts.Group),
			LogStreamName: aws.String(stream),
			LogEvents:     events[:n],
		})
		if err != nil {
			return l.classify(fmt.Errorf("cloudwatch logs PutLogEvents to %s/%s: %w", l.opts.Group, stream, err))
		}
		if r := out.RejectedLogEventsInfo; r != nil {
			return fmt.Errorf("cloudwatch logs rejected events in %s/%s (too old before index %d, too new from %d, expired before %d)",
				l.opts.Group, stream, aws.ToInt32(r.TooOldLogEventEndIndex), aws.ToInt32(r.TooNewLogEventStartIndex), aws.ToInt32(r.ExpiredLogEventEndIndex))
		}
		events = events[n:]
	}

	l.mu.Lock()
	l.lastSeq[jobID] = last
	l.mu.Unlock()
	return nil
}

// StreamName is the stream holding the lines worker writes for job.
func StreamName(jobID, worker string) string { return jobID + "/" + worker }

func (l *Log) ensureStream(ctx context.Context, stream string) error {
	l.mu.Lock()
	done := l.streamCreated[stream]
	l.mu.Unlock()
	if done {
		return nil
	}
	_, err := l.api.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{
		LogGroupName: aws.String(l.opts.Group), LogStreamName: aws.String(stream),
	})
	var exists *types.ResourceAlreadyExistsException
	if err != nil && !errors.As(err, &exists) {
		return l.classify(fmt.Errorf("create log stream %s in %s: %w", stream, l.opts.Group, err))
	}
	l.mu.Lock()
	l.streamCreated[stream] = true
	l.mu.Unlock()
	return nil
}

// jobStreams lists the streams of the job's workers ("<job id>/...").
func (l *Log) jobStreams(ctx context.Context, jobID string) ([]string, error) {
	var names []string
	p := cloudwatchlogs.NewDescribeLogStreamsPaginator(l.api, &cloudwatchlogs.DescribeLogStreamsInput{
		LogGroupName: aws.String(l.opts.Group), LogStreamNamePrefix: aws.String(jobID + "/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, l.classify(fmt.Errorf("cloudwatch logs DescribeLogStreams %s/%s/: %w", l.opts.Group, jobID, err))
		}
		for _, s := range page.LogStreams {
			names = append(names, aws.ToString(s.LogStreamName))
		}
	}
	return names, nil
}

func (l *Log) lastSeqFor(ctx context.Context, jobID string) (int64, error) {
	l.mu.Lock()
	last, ok := l.lastSeq[jobID]
	l.mu.Unlock()
	if ok {
		return last, nil
	}
	// First append of this job in this process: continue after whatever
	// earlier workers wrote.
	var maxSeq int64
	err := l.scan(ctx, jobID, 0, func(r record, _ int64) bool {
		maxSeq = max(maxSeq, r.Seq)
		return true
	})
	return maxSeq, err
}

func (l *Log) classify(err error) error {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return hint.Wrap(err, fmt.Sprintf("create log group %s (Terraform does), or set the worker log group in the configuration", l.opts.Group))
	}
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) && strings.Contains(ae.ErrorCode(), "AccessDenied") {
		return hint.Wrap(err, fmt.Sprintf("grant logs:CreateLogStream, logs:PutLogEvents, logs:DescribeLogStreams and logs:FilterLogEvents on %s to this role", l.opts.Group))
	}
	return err
}

// scan calls fn for each of the job's events from startMS on, in time
// order, until fn returns false.
func (l *Log) scan(ctx context.Context, jobID string, startMS int64, fn func(r record, ts int64) bool) error {
	in := &cloudwatchlogs.FilterLogEventsInput{
		LogGroupName:  aws.String(l.opts.Group),
		FilterPattern: aws.String(`"` + jobID + `"`),
		Interleaved:   aws.Bool(true), //nolint:staticcheck // ignored by AWS (always interleaved), needed by moto
	}
	if startMS > 0 {
		in.StartTime = aws.Int64(startMS)
	}
	{
		list := l.jobStreams
		if l.opts.Streams != nil {
			list = l.opts.Streams
		}
		streams, err := list(ctx, jobID)
		if err != nil {
			return fmt.Errorf("find log streams of job %s: %w", jobID, err)
		}
		var names []string
		for _, s := range streams {
			if s != "" {
				names = append(names, s)
			}
		}
		if len(names) == 0 {
			return nil // no worker has run yet: no lines
		}
		if len(names) > 100 {
			names = names[len(names)-100:] // FilterLogEvents' limit: a job has a few workers
		}
		in.LogStreamNames = names
	}
	p := cloudwatchlogs.NewFilterLogEventsPaginator(l.api, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			var nf *types.ResourceNotFoundException
			if errors.As(err, &nf) {
				return nil // the worker has not created its stream yet
			}
			return l.classify(fmt.Errorf("cloudwatch logs FilterLogEvents in %s for job %s: %w", l.opts.Group, jobID, err))
		}
		for _, ev := range page.Events {
			var r record
			if json.Unmarshal([]byte(aws.ToString(ev.Message)), &r) != nil || r.JobID != jobID {
				continue // not one of ours (e.g. an agent line that mentions the id)
			}
			if !fn(r, aws.ToInt64(ev.Timestamp)) {
				return nil
			}
		}
	}
	return nil
}

// Read returns the job's lines with Seq > after, at most limit, in order.
func (l *Log) Read(ctx context.Context, jobID string, after int64, limit int) ([]joblog.Line, error) {
	if err := validJobID(jobID); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	var start int64
	l.mu.Lock()
	if rp, ok := l.resume[jobID]; ok && after >= rp.seq {
		start = rp.ts
	}
	l.mu.Unlock()

	var out []joblog.Line
	seen := map[int64]bool{}
	var stopTS int64 = -1
	err := l.scan(ctx, jobID, start, func(r record, ts int64) bool {
		// Keep reading the rest of the last millisecond so equal
		// timestamps cannot split a page out of order.
		if stopTS >= 0 && ts > stopTS {
			return false
		}
		if r.Seq > after && !seen[r.Seq] {
			seen[r.Seq] = true
			out = append(out, joblog.Line{Seq: r.Seq, Time: time.UnixMilli(ts).UTC(), Text: r.Msg})
			if len(out) >= limit && stopTS < 0 {
				stopTS = ts
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	if len(out) > limit {
		out = out[:limit]
	}
	if n := len(out); n > 0 {
		l.mu.Lock()
		if len(l.resume) >= maxResumePoints {
			clear(l.resume)
		}
		l.resume[jobID] = resumePoint{seq: out[n-1].Seq, ts: out[n-1].Time.UnixMilli()}
		l.mu.Unlock()
	}
	return out, nil
}

// URL is the CloudWatch console link to the worker's stream (or to the
// group when the worker is not known yet), in the console's own escaping.
func (l *Log) URL(jobID, workerID string) string {
	region := l.opts.Region
	if region == "" {
		region = "us-east-1"
	}
	u := "https://console.aws.amazon.com/cloudwatch/home?region=" + url.QueryEscape(region) +
		"#logsV2:log-groups/log-group/" + consoleEscape(l.opts.Group)
	if workerID != "" {
		u += "/log-events/" + consoleEscape(StreamName(jobID, workerID))
	}
	return u
}

// consoleEscape is the CloudWatch console's fragment escaping: escape as
// JavaScript's encodeURIComponent does, then escape the '%' itself as "$25"
// ("/" becomes "$252F").
func consoleEscape(s string) string {
	e := strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
	return strings.ReplaceAll(e, "%", "$25")
}
