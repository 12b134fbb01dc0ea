// Package apiclient is the typed client of the job service's HTTP API
// (docs/api.md) that the CLI uses: `init` without --local, and `jobs
// list/show/logs/cancel`. Errors carry the HTTP status and the server's
// message, and a hint with the fix where one is known (hint.Of).
package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// Client talks to one job service.
type Client struct {
	// BaseURL is the service root, e.g. http://127.0.0.1:8080 or the API
	// Gateway stage URL.
	BaseURL string
	// APIKey is sent as x-api-key; it never appears in errors.
	APIKey string
	// HTTP defaults to a client without an overall timeout (log follows
	// are long); use ctx for deadlines.
	HTTP *http.Client
	// PollInterval spaces reconnects of a followed log. Default 1s.
	PollInterval time.Duration
	// InsecureHTTP allows plain http:// to a host that is not loopback.
	// Without it such a request is refused before anything is sent: it
	// would carry the API key, and a submit the database URLs, in clear.
	InsecureHTTP bool
}

// ErrPlainHTTP is returned (wrapped, with a hint) for a plain http:// job
// service on a host that is not loopback, unless Client.InsecureHTTP.
var ErrPlainHTTP = errors.New("refusing to send credentials over plain HTTP")

// Error is a non-2xx answer from the service.
type Error struct {
	StatusCode int
	// Message and Field are the server's {"error","field"}.
	Message string
	Field   string
	// JobStatus is the job's status on a 409 from Cancel.
	JobStatus jobs.Status
	// RetryAfter is the server's Retry-After, on 429 and 503.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("job service answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), msg)
}

// Is lets callers test with errors.Is(err, jobs.ErrNotFound) (404) and
// jobs.ErrConflict (409).
func (e *Error) Is(target error) bool {
	switch target {
	case jobs.ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case jobs.ErrConflict:
		return e.StatusCode == http.StatusConflict
	}
	return false
}

// ListOptions select a page of GET /jobs.
type ListOptions struct {
	Limit  int
	Cursor string
	Status jobs.Status
}

// LogOptions select log lines.
type LogOptions struct {
	// After is the seq of the last line already seen (0: from the start).
	After int64
	// Follow keeps reading until the job ends.
	Follow bool
}

// Submit sends a job. A non-empty idempotencyKey makes a retry of the same
// submit return the job the first one created (200 instead of 201).
func (c *Client) Submit(ctx context.Context, req jobs.Request, idempotencyKey string) (api.SubmitResponse, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		return api.SubmitResponse{}, fmt.Errorf("encode job request: %w", err)
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	if idempotencyKey != "" {
		hdr.Set(api.IdempotencyKeyHeader, idempotencyKey)
	}
	var out api.SubmitResponse
	if err := c.do(ctx, http.MethodPost, "/jobs", nil, hdr, &buf, &out); err != nil {
		return api.SubmitResponse{}, fmt.Errorf("submit %s job: %w", req.Command, err)
	}
	return out, nil
}

// Get reads one job.
func (c *Client) Get(ctx context.Context, id string) (api.JobView, error) {
	var out api.JobView
	if err := c.do(ctx, http.MethodGet, "/jobs/"+url.PathEscape(id), nil, nil, nil, &out); err != nil {
		return api.JobView{}, fmt.Errorf("get job %s: %w", id, err)
	}
	return out, nil
}

// List reads one page of the key's jobs, newest first.
func (c *Client) List(ctx context.Context, o ListOptions) (api.ListResponse, error) {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Status != "" {
		q.Set("status", string(o.Status))
	}
	var out api.ListResponse
	if err := c.do(ctx, http.MethodGet, "/jobs", q, nil, nil, &out); err != nil {
		return api.ListResponse{}, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

// Cancel asks the service to cancel a job. A job that already ended is an
// *Error with StatusCode 409 and JobStatus set (errors.Is jobs.ErrConflict).
func (c *Client) Cancel(ctx context.Context, id string) (api.JobView, error) {
	var out api.JobView
	if err := c.do(ctx, http.MethodPost, "/jobs/"+url.PathEscape(id)+"/cancel", nil, nil, nil, &out); err != nil {
		return api.JobView{}, fmt.Errorf("cancel job %s: %w", id, err)
	}
	return out, nil
}

// Health reads GET /health (no key needed). An unhealthy service returns
// its report together with an *Error (503).
func (c *Client) Health(ctx context.Context) (api.HealthResponse, error) {
	var out api.HealthResponse
	err := c.do(ctx, http.MethodGet, "/health", nil, nil, nil, &out)
	if err != nil {
		return out, fmt.Errorf("health check: %w", err)
	}
	return out, nil
}

// Logs calls fn for each log line after o.After, in order. With o.Follow it
// keeps going until the job has ended and every line was delivered,
// reconnecting when the server ends a stream early. It returns the seq of
// the last line delivered, so a caller can resume (e.g. after Ctrl-C).
// An error from fn stops reading and is returned.
func (c *Client) Logs(ctx context.Context, id string, o LogOptions, fn func(joblog.Line) error) (int64, error) {
	after := o.After
	for {
		n, last, err := c.readLogs(ctx, id, after, o.Follow, fn)
		if last > after {
			after = last
		}
		if err != nil || !o.Follow {
			return after, err
		}
		// The stream ended: the job is over, or the server cut a long
		// follow short (e.g. behind API Gateway). Check which.
		job, err := c.Get(ctx, id)
		if err != nil {
			return after, err
		}
		if job.Status.Terminal() {
			// Lines written just before the end may have raced the stream's
			// last read; collect them.
			_, last, err := c.readLogs(ctx, id, after, false, fn)
			if last > after {
				after = last
			}
			return after, err
		}
		if n == 0 {
			if err := sleep(ctx, c.pollInterval()); err != nil {
				return after, err
			}
		}
	}
}

// readLogs runs one GET /jobs/{id}/logs and returns how many lines it
// delivered and the last seq.
func (c *Client) readLogs(ctx context.Context, id string, after int64, follow bool, fn func(joblog.Line) error) (int, int64, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if follow {
		q.Set("follow", "true")
	}
	resp, err := c.send(ctx, http.MethodGet, "/jobs/"+url.PathEscape(id)+"/logs", q, nil, nil)
	if err != nil {
		return 0, after, fmt.Errorf("read log of job %s: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, after, fmt.Errorf("read log of job %s: %w", id, c.apiError(resp))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	n := 0
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l joblog.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return n, after, fmt.Errorf("read log of job %s: malformed line from the service: %w", id, err)
		}
		if l.Seq <= after {
			continue // already delivered (a reconnect overlapped)
		}
		if err := fn(l); err != nil {
			return n, after, err
		}
		after = l.Seq
		n++
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return n, after, ctx.Err()
		}
		return n, after, hint.Wrap(fmt.Errorf("read log of job %s: connection lost: %w", id, err),
			fmt.Sprintf("follow it again with: jobs logs %s --follow", id))
	}
	return n, after, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, hdr http.Header, body io.Reader, out any) error {
	resp, err := c.send(ctx, method, path, q, hdr, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusServiceUnavailable && out != nil && path == "/health" {
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = json.Unmarshal(data, out)
			return c.apiErrorFrom(resp, data)
		}
		return c.apiError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode the service's answer: %w", err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, hdr http.Header, body io.Reader) (*http.Response, error) {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		return nil, hint.Wrap(errors.New("no job service URL configured"),
			"pass --remote-api URL or set SEREN_REMOTE_API")
	}
	if err := c.checkScheme(base); err != nil {
		return nil, err
	}
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, hint.Wrap(fmt.Errorf("job service URL %s: %w", redactedBase(base), err),
			"pass --remote-api as http(s)://host[:port]")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if c.APIKey != "" {
		req.Header.Set(api.APIKeyHeader, c.APIKey)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, transportError(base, err)
	}
	return resp, nil
}

// transportError explains a failure to reach the service.
func transportError(base string, err error) error {
	var ue *url.Error
	inner := err
	if errors.As(err, &ue) {
		inner = ue.Err // the url.Error repeats the URL; say it once ourselves
	}
	e := fmt.Errorf("cannot reach the job service at %s: %w", redactedBase(base), inner)
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return hint.Wrap(e, fmt.Sprintf("is `serve` running at %s? Start it with: postgres-seren-replicator serve", redactedBase(base)))
	case errors.As(err, &dnsErr):
		return hint.Wrap(e, "check the host in --remote-api / SEREN_REMOTE_API")
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return hint.Wrap(e, "the service did not answer in time; check the network and retry")
		}
	}
	return hint.Wrap(e, "check --remote-api / SEREN_REMOTE_API and that the service is up")
}

func (c *Client) apiError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	return c.apiErrorFrom(resp, data)
}

func (c *Client) apiErrorFrom(resp *http.Response, data []byte) error {
	e := &Error{StatusCode: resp.StatusCode}
	var body api.ErrorResponse
	if json.Unmarshal(data, &body) == nil {
		e.Message, e.Field, e.JobStatus = body.Error, body.Field, body.Status
	} else if s := strings.TrimSpace(string(data)); s != "" && len(s) < 500 {
		e.Message = s
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return hint.Wrap(e, "check SEREN_API_KEY: it must be a key printed by `keys create` on the service and not revoked")
	case http.StatusTooManyRequests:
		wait := "a moment"
		if e.RetryAfter > 0 {
			wait = e.RetryAfter.String()
		}
		return hint.Wrap(e, fmt.Sprintf("the service is at its limit; retry later (after %s)", wait))
	case http.StatusNotFound:
		return hint.Wrap(e, "check the job id (`jobs list`); a key sees only the jobs it submitted")
	case http.StatusBadRequest:
		if e.Field != "" {
			return hint.Wrap(e, fmt.Sprintf("fix %s in the request", e.Field))
		}
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return hint.Wrap(e, "the service is having trouble; retry later")
	}
	return e
}

// checkScheme refuses http:// to a host that is not loopback, unless
// InsecureHTTP.
func (c *Client) checkScheme(base string) error {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || c.InsecureHTTP || IsLoopbackHost(u.Hostname()) {
		return nil // a bad URL fails later with its own message
	}
	return hint.Wrap(fmt.Errorf("job service at %s: %w: the API key and database URLs would travel in clear", redactedBase(base), ErrPlainHTTP),
		"use the service's https:// URL (serve --tls-cert/--tls-key), or, on a network you trust, pass --insecure-http (or set SEREN_INSECURE_HTTP=1)")
}

// IsLoopbackHost reports whether host (a name or an IP, without port) is
// this machine: localhost, *.localhost, 127.0.0.0/8 or ::1.
func IsLoopbackHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// defaultHTTP follows no redirects: the API never redirects, and a
// redirect would carry the x-api-key header to wherever it points.
var defaultHTTP = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func (c *Client) pollInterval() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return time.Second
}

// redactedBase hides any password in the base URL.
func redactedBase(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
