package logical

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// PasswordMode says how the subscription's connection to the source
// authenticates. The connection string is stored in the target's catalog
// (pg_subscription.subconninfo, readable by superusers, and written out
// by pg_dump unless --no-subscriptions); docs/sync.md weighs the choices.
type PasswordMode string

const (
	// PasswordInline puts the password in the connection string (the
	// default: works everywhere, including managed targets, but the
	// password is stored in the target's catalog).
	PasswordInline PasswordMode = "inline"
	// PasswordPassfile leaves the password out and adds passfile=PATH: the
	// target server's walreceiver reads the password from that pgpass file
	// on the TARGET server host (or from ~/.pgpass of the server's OS user
	// when PATH is empty). Needs a target you can put files on; on
	// PostgreSQL 16+ the subscription owner must be a superuser (or
	// password_required = false).
	PasswordPassfile PasswordMode = "passfile"
)

// ParsePasswordMode parses a --subscription-password value.
func ParsePasswordMode(s string) (PasswordMode, error) {
	switch PasswordMode(s) {
	case "", PasswordInline:
		return PasswordInline, nil
	case PasswordPassfile:
		return PasswordPassfile, nil
	}
	return "", fmt.Errorf("password mode %q is not one of inline, passfile", s)
}

// SubOptions shape the connection string the target uses to reach the source.
type SubOptions struct {
	// PasswordMode: inline (default) or passfile.
	PasswordMode PasswordMode
	// Passfile is the pgpass file's path on the target server host
	// (passfile mode; "" = the server OS user's ~/.pgpass).
	Passfile string
	// User, when set, replaces the source URL's user: a dedicated role
	// with REPLICATION (or rds_replication) and SELECT on the published
	// tables, whose password can be rotated with ALTER ROLE … PASSWORD and
	// ALTER SUBSCRIPTION … CONNECTION without touching the admin user.
	User string
	// Password of User (inline mode). Ignored when User is empty.
	Password string
	// Host, when set, is host[:port] under which the target server reaches
	// the source, if that differs from the source URL's (private address,
	// container name).
	Host string
}

// libpqKeys are the URL query parameters passed on into the connection
// string (libpq keywords the walreceiver understands). application_name is
// left out on purpose: the walsender then reports the subscription's name,
// which Status relies on.
var libpqKeys = []string{
	"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "sslsni", "sslcompression",
	"sslpassword", "ssl_min_protocol_version", "ssl_max_protocol_version", "requirepeer", "gssencmode",
	"krbsrvname", "gsslib", "channel_binding", "connect_timeout", "keepalives", "keepalives_idle",
	"keepalives_interval", "keepalives_count", "tcp_user_timeout", "target_session_attrs", "options",
	"hostaddr", "require_auth", "sslcertmode", "load_balance_hosts", "service",
}

// ConnInfo builds the libpq connection string with which the target's
// subscription connects to the source database src names. Treat the result
// as a secret in inline mode.
func ConnInfo(src pg.URL, opts SubOptions) (string, error) {
	u, err := url.Parse(src.Secret())
	if err != nil {
		return "", errors.New("source URL cannot be parsed")
	}
	mode, err := ParsePasswordMode(string(opts.PasswordMode))
	if err != nil {
		return "", err
	}
	q := u.Query()
	var kv [][2]string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, [2]string{k, v})
		}
	}
	hostport := u.Host
	if opts.Host != "" {
		hostport = opts.Host
	}
	var hosts, ports []string
	for _, hp := range strings.Split(hostport, ",") {
		h, p, err := net.SplitHostPort(hp)
		if err != nil { // no port
			h, p = strings.Trim(hp, "[]"), ""
		}
		hosts = append(hosts, h)
		ports = append(ports, p)
	}
	if strings.Join(hosts, "") == "" {
		hosts, ports = []string{q.Get("host")}, []string{q.Get("port")}
	}
	add("host", strings.Join(hosts, ","))
	if strings.Join(ports, "") != "" {
		add("port", strings.Join(ports, ","))
	}
	add("dbname", src.Database())
	user, password := src.User(), src.Password()
	if opts.User != "" {
		user, password = opts.User, opts.Password
	}
	add("user", user)
	switch mode {
	case PasswordInline:
		add("password", password)
	case PasswordPassfile:
		add("passfile", opts.Passfile)
	}
	for _, k := range libpqKeys {
		add(k, q.Get(k))
	}
	parts := make([]string, len(kv))
	for i, p := range kv {
		parts[i] = p[0] + "=" + quoteConnValue(p[1])
	}
	return strings.Join(parts, " "), nil
}

func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// parseConnInfo reads back a key='value' connection string as ConnInfo
// writes it (and plain key=value).
func parseConnInfo(s string) map[string]string {
	out := map[string]string{}
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			break
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 1
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
			i++
		} else {
			for i < len(s) && s[i] != ' ' {
				val.WriteByte(s[i])
				i++
			}
		}
		out[key] = val.String()
	}
	return out
}

// SubInfo is what the target's catalog says about one subscription.
type SubInfo struct {
	Name         string
	Enabled      bool
	SlotName     string // "" when slot_name = NONE
	Publications []string
	// Source is host:port/dbname of the source as the connection string
	// names it ("" when the catalog column is not readable).
	Source   string
	connInfo string
}

// GetSubscription returns subscription name of the database conn is
// connected to, or nil when there is none.
func GetSubscription(ctx context.Context, conn pg.Querier, name string) (*SubInfo, error) {
	var s SubInfo
	var slot *string
	err := conn.QueryRow(ctx, `
SELECT s.subname::text, s.subenabled, s.subslotname::text, s.subpublications
FROM pg_subscription s
WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, name).
		Scan(&s.Name, &s.Enabled, &slot, &s.Publications)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read subscription %s: %w", name, err)
	}
	if slot != nil {
		s.SlotName = *slot
	}
	// subconninfo is readable by superusers only; without it we compare less.
	var ci string
	if err := conn.QueryRow(ctx, `SELECT subconninfo FROM pg_subscription WHERE subname = $1
AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)`, name).Scan(&ci); err == nil {
		s.connInfo = ci
		m := parseConnInfo(ci)
		s.Source = m["host"]
		if m["port"] != "" {
			s.Source += ":" + m["port"]
		}
		s.Source += "/" + m["dbname"]
	}
	return &s, nil
}

// CreateSubscription creates subscription name in the target database
// targetConn is connected to, streaming publication from the existing
// slot on the source database src names: create_slot = false,
// copy_data = false (the data is already there), enabled = true. It never
// prints or returns the connection string.
//
// It is idempotent: an existing subscription on the same publication, slot
// and source database is kept (enabled if it was disabled, its connection
// string updated if only the credentials changed); any other existing
// definition is an error wrapping ErrConflict.
func CreateSubscription(ctx context.Context, targetConn *pgx.Conn, name string, src pg.URL, publication, slot string, opts SubOptions) error {
	conninfo, err := ConnInfo(src, opts)
	if err != nil {
		return fmt.Errorf("subscription %s: %w", name, err)
	}
	redact := func(s string) string {
		s = pg.Redact(s, src)
		if opts.Password != "" {
			s = strings.ReplaceAll(s, opts.Password, "xxxxx")
		}
		return s
	}
	existing, err := GetSubscription(ctx, targetConn, name)
	if err != nil {
		return err
	}
	if existing != nil {
		var diffs []string
		if existing.SlotName != slot {
			diffs = append(diffs, fmt.Sprintf("uses slot %q, want %q", existing.SlotName, slot))
		}
		if !slices.Equal(existing.Publications, []string{publication}) {
			diffs = append(diffs, fmt.Sprintf("subscribes to %v, want [%s]", existing.Publications, publication))
		}
		if existing.connInfo != "" {
			have, want := parseConnInfo(existing.connInfo), parseConnInfo(conninfo)
			for _, k := range []string{"host", "port", "dbname"} {
				if have[k] != want[k] {
					diffs = append(diffs, fmt.Sprintf("connects to %s %q, want %q", k, have[k], want[k]))
				}
			}
		}
		if len(diffs) > 0 {
			return hint.Wrap(fmt.Errorf("subscription %s %w: %s", name, ErrConflict, strings.Join(diffs, "; ")),
				"re-run with --force to recreate it")
		}
		if existing.connInfo != "" && existing.connInfo != conninfo {
			if _, err := targetConn.Exec(ctx, "ALTER SUBSCRIPTION "+pg.Ident(name)+" CONNECTION "+pg.Literal(conninfo)); err != nil {
				return fmt.Errorf("subscription %s: update connection: %s", name, redact(err.Error()))
			}
		}
		if !existing.Enabled {
			if _, err := targetConn.Exec(ctx, "ALTER SUBSCRIPTION "+pg.Ident(name)+" ENABLE"); err != nil {
				return fmt.Errorf("subscription %s: enable: %w", name, err)
			}
		}
		return nil
	}
	stmt := "CREATE SUBSCRIPTION " + pg.Ident(name) +
		" CONNECTION " + pg.Literal(conninfo) +
		" PUBLICATION " + pg.Ident(publication) +
		" WITH (create_slot = false, copy_data = false, enabled = true, slot_name = " + pg.Literal(slot) + ")"
	if _, err := targetConn.Exec(ctx, stmt); err != nil {
		var pgErr *pgconn.PgError
		msg := redact(err.Error())
		if errors.As(err, &pgErr) {
			msg = redact(pgErr.Message) + " (SQLSTATE " + pgErr.Code + ")"
			switch pgErr.Code {
			case "42501":
				return hint.Wrap(fmt.Errorf("create subscription %s: %s", name, msg),
					"connect to the target as a superuser (PostgreSQL 16+: a member of pg_create_subscription with CREATE on the database)")
			case "08001", "08006", "28P01", "28000":
				return hint.Wrap(fmt.Errorf("create subscription %s: the target server could not connect to the source: %s", name, msg),
					"the TARGET server connects to the source itself: make the source host reachable from the target server (or pass --subscription-host), and check pg_hba.conf and the password mode")
			}
		}
		return fmt.Errorf("create subscription %s: %s", name, msg)
	}
	return nil
}

// DropSubscription drops subscription name of the database conn is
// connected to, if it exists, without touching the source: it disables
// it, detaches it from its slot (slot_name = NONE) and drops it. Drop the
// slot with DropSlot.
func DropSubscription(ctx context.Context, conn pg.Querier, name string) error {
	s, err := GetSubscription(ctx, conn, name)
	if err != nil || s == nil {
		return err
	}
	id := pg.Ident(name)
	for _, stmt := range []string{
		"ALTER SUBSCRIPTION " + id + " DISABLE",
		"ALTER SUBSCRIPTION " + id + " SET (slot_name = NONE)",
		"DROP SUBSCRIPTION " + id,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("drop subscription %s: %s: %w", name, strings.Fields(stmt)[0]+" "+strings.Fields(stmt)[1], err)
		}
	}
	return nil
}
