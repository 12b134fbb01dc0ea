package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// MinServerVersion is the oldest PostgreSQL major we replicate from or to.
const MinServerVersion = 12

// Connect opens one connection to u. Failures carry a hint with the fix.
// role names the side ("source", "target") for messages.
func Connect(ctx context.Context, u URL, role string) (*pgx.Conn, error) {
	cfg, err := ConnConfig(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	conn, err := withRetry(ctx, func() (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) })
	if err != nil {
		return nil, Explain(err, u, role)
	}
	return conn, nil
}

// ConnConfig parses u into a pgx config with our defaults.
func ConnConfig(u URL) (*pgx.ConnConfig, error) {
	if u.policy != nil {
		return untrustedConnConfig(u)
	}
	cfg, err := pgx.ParseConfig(u.Secret())
	if err != nil {
		return nil, fmt.Errorf("parse connection URL %s: %s", u, Redact(err.Error(), u))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15e9
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "postgres-seren-replicator"
	}
	// Sent at startup, it outranks role and database defaults: SQL text
	// (row filters included) is read as the UTF-8 it was written in, never
	// as a client-only encoding such as SJIS whose trail bytes swallow '\'.
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	return cfg, nil
}

// Pool opens a connection pool of at most size connections to u.
func Pool(ctx context.Context, u URL, role string, size int) (*pgxpool.Pool, error) {
	cfg, err := PoolConfig(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	if size < 1 {
		size = 1
	}
	cfg.MaxConns = int32(size)
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, Explain(err, u, role)
	}
	c, err := withRetry(ctx, func() (*pgxpool.Conn, error) { return p.Acquire(ctx) })
	if err != nil {
		p.Close()
		return nil, Explain(err, u, role)
	}
	c.Release()
	return p, nil
}

// PoolConfig is ConnConfig for a pgxpool (pool_* URL parameters are
// honoured only for trusted URLs).
func PoolConfig(u URL) (*pgxpool.Config, error) {
	if u.policy != nil {
		cc, err := untrustedConnConfig(u)
		if err != nil {
			return nil, err
		}
		cfg, err := pgxpool.ParseConfig("")
		if err != nil {
			return nil, fmt.Errorf("pool defaults: %w", err)
		}
		cfg.ConnConfig = cc
		return cfg, nil
	}
	cfg, err := pgxpool.ParseConfig(u.Secret())
	if err != nil {
		return nil, fmt.Errorf("parse connection URL %s: %s", u, Redact(err.Error(), u))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 15e9
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "postgres-seren-replicator"
	cfg.ConnConfig.RuntimeParams["client_encoding"] = "UTF8" // see ConnConfig
	return cfg, nil
}

// PgConnConfig is ConnConfig at the pgconn level (replication connections).
func PgConnConfig(u URL) (*pgconn.Config, error) {
	cfg, err := ConnConfig(u)
	if err != nil {
		return nil, err
	}
	return &cfg.Config, nil
}

// Explain turns a connection or query error into one clear message with the
// fix attached, never including the password.
func Explain(err error, u URL, role string) error {
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("%s %s", role, u)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		msg := fmt.Errorf("%s: %s (SQLSTATE %s)", where, Redact(pgErr.Message, u), pgErr.Code)
		switch pgErr.Code {
		case "28P01", "28000":
			return hint.Wrap(msg, fmt.Sprintf("check the user name and password in the %s URL, and that pg_hba.conf on the %s server allows this user from this host", role, role))
		case "3D000":
			return hint.Wrap(msg, fmt.Sprintf("create the database on the %s server, or name an existing one in the URL (postgres://…/postgres)", role))
		case "42501":
			return hint.Wrap(msg, fmt.Sprintf("grant the privilege to user %q on the %s server, or connect as a user that has it", u.User(), role))
		case "53300":
			return hint.Wrap(msg, fmt.Sprintf("the %s server has no free connections: raise max_connections or lower --jobs", role))
		case "55000":
			return hint.Wrap(msg, fmt.Sprintf("check the %s server's settings (see `postgres-seren-replicator validate`)", role))
		}
		return msg
	}
	text := Redact(err.Error(), u)
	if u.policy != nil {
		// A job's URL is untrusted: do not tell its submitter which
		// addresses exist or which ports are open on our network, nor
		// show local paths. The detail stays in the server log.
		if errors.Is(err, ErrAddressNotAllowed) {
			return &HiddenError{Public: fmt.Sprintf("%s: the host is not in a network this service may connect to", where), Detail: where + ": " + text}
		}
		return &HiddenError{Public: fmt.Sprintf("%s: could not connect (the details are in the service log under this job's trace id)", where), Detail: where + ": " + text}
	}
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return hint.Wrap(fmt.Errorf("%s: host name not found: %s", where, text), fmt.Sprintf("check the host name in the %s URL", role))
	case errors.As(err, &opErr), errors.As(err, &netErr), strings.Contains(text, "connection refused"), strings.Contains(text, "dial error"):
		return hint.Wrap(fmt.Errorf("%s: cannot reach the server: %s", where, text),
			fmt.Sprintf("check that the %s server is running and accepts TCP connections on %s (listen_addresses, firewall, security group)", role, u.Host()))
	case errors.Is(err, context.DeadlineExceeded):
		return hint.Wrap(fmt.Errorf("%s: timed out: %s", where, text), fmt.Sprintf("check that %s is reachable from this machine", u.Host()))
	}
	return fmt.Errorf("%s: %s", where, text)
}

// ServerVersion returns the server's version number, e.g. 150004.
func ServerVersion(ctx context.Context, q Querier) (int, error) {
	var v int
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&v); err != nil {
		return 0, fmt.Errorf("read server_version_num: %w", err)
	}
	return v, nil
}

// CheckVersion refuses servers older than MinServerVersion.
func CheckVersion(v int, role string) error {
	if v/10000 < MinServerVersion {
		return hint.Wrap(fmt.Errorf("%s server is PostgreSQL %d, older than the oldest supported (%d)", role, v/10000, MinServerVersion),
			fmt.Sprintf("upgrade the %s server to PostgreSQL %d or newer", role, MinServerVersion))
	}
	return nil
}

// Querier is what pgx.Conn, pgx.Tx and pgxpool.Pool have in common.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Ident quotes one or more name parts as a (qualified) SQL identifier.
func Ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// Literal quotes s as a SQL string literal.
func Literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// HiddenError is a connection failure of an untrusted URL: Error is what
// the job's submitter sees, Detail (already redacted) goes only to the
// service's log.
type HiddenError struct {
	Public string
	Detail string
}

func (e *HiddenError) Error() string { return e.Public }
