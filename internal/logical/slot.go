package logical

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// ErrExists is returned when an object we are asked to create already
// exists and cannot be reused (a slot's exported snapshot exists only at
// its creation).
var ErrExists = errors.New("already exists")

// slotNameRE is PostgreSQL's rule for slot names.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Slot is a logical replication slot just created with an exported
// snapshot. The snapshot stays importable (SET TRANSACTION SNAPSHOT) while
// the slot's replication connection is open and idle: run the copy, then
// Close. The slot itself outlives the connection.
type Slot struct {
	name, snapshot, lsn string
	src                 pg.URL
	conn                *pgconn.PgConn
}

// Name is the slot name.
func (s *Slot) Name() string { return s.name }

// SnapshotName is the exported snapshot, for SET TRANSACTION SNAPSHOT.
func (s *Slot) SnapshotName() string { return s.snapshot }

// ConsistentLSN is the WAL position the slot starts from: changes
// committed after it are streamed, earlier ones are in the snapshot.
func (s *Slot) ConsistentLSN() string { return s.lsn }

// Close closes the replication connection, which ends the exported
// snapshot. The slot stays (and retains WAL until a subscriber consumes it).
func (s *Slot) Close(ctx context.Context) error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close(ctx)
	s.conn = nil
	if err != nil {
		return fmt.Errorf("close replication connection of slot %s: %w", s.name, err)
	}
	return nil
}

// Drop drops the slot (closing the replication connection first if it is
// still open), so the source stops retaining WAL for it. It is meant for
// cleanup after a failure and therefore runs even when ctx is already
// cancelled (for at most 30 seconds).
func (s *Slot) Drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if s.conn != nil {
		_, err := s.conn.Exec(ctx, "DROP_REPLICATION_SLOT "+s.name).ReadAll()
		_ = s.Close(ctx)
		if err == nil {
			return nil
		}
		// Fall through to a normal connection (e.g. the replication
		// connection broke).
	}
	conn, err := pg.Connect(ctx, s.src, "source")
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", s.name, err)
	}
	defer conn.Close(ctx)
	return DropSlot(ctx, conn, s.name)
}

// CreateSlot creates logical slot name (output plugin pgoutput) on the
// source database src names, over a replication connection it keeps open,
// and exports a snapshot at the slot's consistent point. The publication
// of the same name must already exist in that database (see the package
// comment); CreateSlot refuses otherwise. A slot of that name that already
// exists is not reused (its snapshot is gone): the error wraps ErrExists.
func CreateSlot(ctx context.Context, src pg.URL, name string) (*Slot, error) {
	if !slotNameRE.MatchString(name) {
		return nil, fmt.Errorf("slot name %q is not valid (want [a-z0-9_], at most 63 bytes)", name)
	}
	cfg, err := pg.PgConnConfig(src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "postgres-seren-replicator"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, explainSlotError(pg.Explain(err, src, "source"), name)
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()

	res, err := conn.Exec(ctx, "SELECT count(*) FROM pg_publication WHERE pubname = "+pg.Literal(name)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("slot %s: look up publication: %w", name, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "1" {
		return nil, hint.Wrap(fmt.Errorf("slot %s: publication %s does not exist in source database %s; it must be created before the slot, or decoding fails with \"publication does not exist\"", name, name, src.Database()),
			"call CreatePublication before CreateSlot")
	}

	major := serverMajor(conn.ParameterStatus("server_version"))
	stmt := "CREATE_REPLICATION_SLOT " + name + " LOGICAL pgoutput (SNAPSHOT 'export')"
	if major > 0 && major < 15 {
		stmt = "CREATE_REPLICATION_SLOT " + name + " LOGICAL pgoutput EXPORT_SNAPSHOT"
	}
	res, err = conn.Exec(ctx, stmt).ReadAll()
	if err != nil {
		return nil, explainSlotError(err, name)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 3 {
		return nil, fmt.Errorf("create slot %s: unexpected reply to CREATE_REPLICATION_SLOT", name)
	}
	row := res[0].Rows[0]
	s := &Slot{name: name, lsn: string(row[1]), snapshot: string(row[2]), src: src, conn: conn}
	if s.snapshot == "" {
		_ = s.Drop(ctx)
		return nil, fmt.Errorf("create slot %s: the server exported no snapshot", name)
	}
	ok = true
	return s, nil
}

func explainSlotError(err error, name string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("create slot %s: %w", name, err)
	}
	msg := fmt.Errorf("create slot %s: %w", name, err)
	switch pgErr.Code {
	case "42710":
		return hint.Wrap(fmt.Errorf("create slot %s: %w (%s)", name, ErrExists, pgErr.Message),
			fmt.Sprintf("a slot left by an earlier run cannot be reused for a new copy; drop it on the source: SELECT pg_drop_replication_slot(%s);", pg.Literal(name)))
	case "53400":
		return hint.Wrap(msg, "all replication slots on the source are in use: drop unused ones (SELECT slot_name FROM pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart the source")
	case "53300":
		return hint.Wrap(msg, "the source has no free WAL sender or connection: raise max_wal_senders (restart needed) or stop other replication clients")
	case "55000":
		return hint.Wrap(msg, "set wal_level = logical on the source and restart it (on RDS/Aurora: rds.logical_replication = 1 in the parameter group)")
	case "42501", "28000":
		return hint.Wrap(msg, "the source user needs the REPLICATION attribute: ALTER ROLE <user> WITH REPLICATION; (on RDS: GRANT rds_replication TO <user>;)")
	}
	return msg
}

// serverMajor parses the major version out of server_version ("15.4 (Debian…)", "9.6.2").
func serverMajor(v string) int {
	f := strings.FieldsFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// DropSlot drops replication slot name on the server conn is connected
// to, if it exists. A walsender still attached to it (a subscription just
// disabled or dropped) is given a few seconds to go away, then terminated.
func DropSlot(ctx context.Context, conn pg.Querier, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var active bool
		var pid *int32
		err := conn.QueryRow(ctx, "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&active, &pid)
		if err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		if active && time.Now().After(deadline) && pid != nil {
			if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", *pid); err != nil {
				return fmt.Errorf("drop slot %s: stop the WAL sender using it (pid %d): %w", name, *pid, err)
			}
		}
		if !active {
			_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name)
			var pgErr *pgconn.PgError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &pgErr) && pgErr.Code == "42704": // gone meanwhile
				return nil
			case errors.As(err, &pgErr) && pgErr.Code == "55006": // became active: retry
			default:
				return fmt.Errorf("drop slot %s: %w", name, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop slot %s: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// SlotInfo is what pg_replication_slots says about one slot.
type SlotInfo struct {
	Name              string
	Database          string
	Active            bool
	ActivePID         int
	ConfirmedFlushLSN string
	RestartLSN        string
	// WALStatus: reserved, extended, unreserved or lost (PG 13+; "" before).
	WALStatus string
}

// GetSlot returns the slot called name, or nil when there is none.
func GetSlot(ctx context.Context, q pg.Querier, name string) (*SlotInfo, error) {
	ver, err := pg.ServerVersion(ctx, q)
	if err != nil {
		return nil, err
	}
	walStatus := "''"
	if ver >= 130000 {
		walStatus = "coalesce(wal_status, '')"
	}
	rows, err := q.Query(ctx, `
SELECT slot_name::text, coalesce(database::text, ''), active, coalesce(active_pid, 0),
       coalesce(confirmed_flush_lsn::text, ''), coalesce(restart_lsn::text, ''), `+walStatus+`
FROM pg_replication_slots WHERE slot_name = $1`, name)
	if err != nil {
		return nil, fmt.Errorf("read slot %s: %w", name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var s SlotInfo
	if err := rows.Scan(&s.Name, &s.Database, &s.Active, &s.ActivePID, &s.ConfirmedFlushLSN, &s.RestartLSN, &s.WALStatus); err != nil {
		return nil, fmt.Errorf("read slot %s: %w", name, err)
	}
	return &s, rows.Err()
}
