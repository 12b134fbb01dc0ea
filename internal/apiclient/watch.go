package apiclient

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
)

// Watch polls a job every interval (default PollInterval) and calls fn
// with the job each time it changed, until the job is terminal; it returns
// the final view. Passing trouble (the service restarting, 429, 5xx, a
// dropped connection) is retried with backoff up to a minute apart, so a
// laptop that sleeps through part of a long job picks up where it was; an
// answer that will not change (401, 404) or an error from fn ends it.
func (c *Client) Watch(ctx context.Context, id string, interval time.Duration, fn func(api.JobView) error) (api.JobView, error) {
	if interval <= 0 {
		interval = c.pollInterval()
	}
	var last api.JobView
	seen := false
	wait := interval
	for {
		v, err := c.Get(ctx, id)
		switch {
		case err == nil:
			wait = interval
			if !seen || !sameView(last, v) {
				seen, last = true, v
				if err := fn(v); err != nil {
					return v, err
				}
			}
			if v.Status.Terminal() {
				return v, nil
			}
		case ctx.Err() != nil:
			return last, ctx.Err()
		case !transient(err):
			return last, err
		default:
			wait = min(wait*2, time.Minute)
			var ae *Error
			if errors.As(err, &ae) && ae.RetryAfter > wait {
				wait = ae.RetryAfter
			}
		}
		if err := sleep(ctx, wait); err != nil {
			return last, err
		}
	}
}

// transient reports whether retrying later may succeed.
func transient(err error) bool {
	var ae *Error
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return true // could not reach the service
}

func sameView(a, b api.JobView) bool {
	return a.Status == b.Status && a.UpdatedAt.Equal(b.UpdatedAt) && reflect.DeepEqual(a.Progress, b.Progress)
}
