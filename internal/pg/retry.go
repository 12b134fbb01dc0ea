package pg

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// retryDelays are the waits between connection attempts on a transient
// error: five attempts, about 15 s of waiting (plus jitter), bounded by ctx.
var retryDelays = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}

// retryHook, when set (by tests), hears each failed attempt before a retry.
var retryHook func(attempt int, err error)

type noRetryKey struct{}

// WithoutRetry marks ctx so that connections made under it try once: for
// best-effort probes (a remote init's size estimate from the client, whose
// source may be reachable only from the service) that must not wait out
// the back-off.
func WithoutRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

// withRetry runs try until it succeeds, fails with an error that is not
// Transient, the attempts run out, or ctx ends (the last error is returned).
func withRetry[T any](ctx context.Context, try func() (T, error)) (T, error) {
	once, _ := ctx.Value(noRetryKey{}).(bool)
	for attempt := 1; ; attempt++ {
		v, err := try()
		if err == nil || once || attempt > len(retryDelays) || !Transient(err) || ctx.Err() != nil {
			return v, err
		}
		if retryHook != nil {
			retryHook(attempt, err)
		}
		d := retryDelays[attempt-1]
		d += time.Duration(rand.Int64N(int64(d)/4 + 1)) // jitter, so parallel workers do not retry in step
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}

// Transient reports whether a connection error may go away on its own:
// the server refused or reset the connection, is starting up or shutting
// down (57P03), has no free connection slot (53300), or a DNS lookup
// failed temporarily. Authentication and other server errors are not.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57P03" || pgErr.Code == "53300"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary && !dnsErr.IsNotFound
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
