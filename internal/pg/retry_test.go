package pg_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestTransient(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &osSyscallError{syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("connect: %w", refused), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"starting up 57P03", &pgconn.PgError{Code: "57P03"}, true},
		{"too many connections 53300", &pgconn.PgError{Code: "53300"}, true},
		{"dns temporary", &net.DNSError{Err: "server misbehaving", Name: "db.example", IsTemporary: true}, true},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "db.example", IsNotFound: true}, false},
		{"bad password 28P01", &pgconn.PgError{Code: "28P01"}, false},
		{"no access 28000", &pgconn.PgError{Code: "28000"}, false},
		{"no database 3D000", &pgconn.PgError{Code: "3D000"}, false},
		{"cancelled", fmt.Errorf("dial: %w", context.Canceled), false},
		{"other", errors.New("tls: bad certificate"), false},
	}
	for _, tt := range tests {
		if got := pg.Transient(tt.err); got != tt.want {
			t.Errorf("%s: Transient = %v; want %v", tt.name, got, tt.want)
		}
	}
}

type osSyscallError struct{ errno syscall.Errno }

func (e *osSyscallError) Error() string { return "connect: " + e.errno.Error() }
func (e *osSyscallError) Unwrap() error { return e.errno }

// TestConnectRetriesUntilTheServerIsUp: the server is down at the first
// attempt (connection refused); Connect retries and succeeds once it is up.
func TestConnectRetriesUntilTheServerIsUp(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	var attempts atomic.Int32
	defer pg.SetRetryForTest([]time.Duration{500 * time.Millisecond, 2 * time.Second, 5 * time.Second, 10 * time.Second},
		func(attempt int, err error) {
			if attempts.Add(1) == 1 { // first failure seen: bring the server up
				go func() { started <- c.Start() }()
			}
		})()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pg.Connect(ctx, c.URL("postgres"), "source")
	if err != nil {
		t.Fatalf("Connect after a restart: %v (attempts %d)", err, attempts.Load())
	}
	defer conn.Close(ctx)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if attempts.Load() < 1 {
		t.Fatal("Connect succeeded without a retry: the server was not down")
	}
}

// TestConnectDoesNotRetryAuthFailures: a wrong password fails at once.
func TestConnectDoesNotRetryAuthFailures(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{Password: "right-password"})
	var attempts atomic.Int32
	defer pg.SetRetryForTest([]time.Duration{time.Second, time.Second}, func(int, error) { attempts.Add(1) })()
	u := pg.MustParseURL(fmt.Sprintf("postgres://%s:wrong-password@127.0.0.1:%d/postgres?sslmode=disable", c.User, c.Port))
	_, err := pg.Connect(context.Background(), u, "target")
	if err == nil {
		t.Fatal("connected with a wrong password")
	}
	if n := attempts.Load(); n != 0 {
		t.Fatalf("auth failure retried %d times: %v", n, err)
	}
}

// TestConnectRetryStopsWithContext: retries end when ctx does.
func TestConnectRetryStopsWithContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now: connection refused
	ctx, cancel := context.WithCancel(context.Background())
	defer pg.SetRetryForTest([]time.Duration{time.Hour, time.Hour}, func(int, error) { cancel() })()
	u := pg.MustParseURL(fmt.Sprintf("postgres://u:p@127.0.0.1:%d/postgres?sslmode=disable", port))
	done := make(chan error, 1)
	go func() { _, err := pg.Connect(ctx, u, "source"); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("connected to a closed port")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Connect kept waiting after its context was cancelled")
	}
}
