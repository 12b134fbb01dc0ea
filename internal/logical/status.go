package logical

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Subscription states reported by Status.
const (
	StateStreaming = "streaming"       // enabled, worker running, caught up or catching up
	StateSyncing   = "syncing-tables"  // some tables are not ready yet
	StateDisabled  = "disabled"        // the subscription exists but is disabled
	StateDown      = "down"            // enabled, but no worker or no WAL sender (retrying)
	StateBroken    = "broken"          // the slot is missing or has lost WAL: needs a fresh copy
	StateNoSub     = "no-subscription" // the slot exists on the source, the subscription does not
	StateNone      = "not-set-up"      // none of our objects exist
)

// TableState is one table of a subscription that is not ready.
type TableState struct {
	Table string `json:"table"` // schema.name
	// State: initializing, copying, copied, synchronized or ready.
	State string `json:"state"`
}

// Status is the sync state of one database.
type Status struct {
	Database     string `json:"database"`
	Subscription string `json:"subscription"`
	Slot         string `json:"slot"`
	State        string `json:"state"`
	Enabled      bool   `json:"enabled"`
	WorkerPID    int    `json:"worker_pid,omitempty"`
	SlotActive   bool   `json:"slot_active"`
	// Tables counts the subscription's tables; TablesNotReady lists those
	// not yet in state ready.
	Tables         int          `json:"tables"`
	TablesNotReady []TableState `json:"tables_not_ready"`
	// SourceLSN is the source's current WAL position, ConfirmedLSN what
	// the subscriber has confirmed (the slot's confirmed_flush_lsn).
	SourceLSN    string `json:"source_lsn,omitempty"`
	ConfirmedLSN string `json:"confirmed_lsn,omitempty"`
	ReceivedLSN  string `json:"received_lsn,omitempty"`
	// LagBytes is SourceLSN - ConfirmedLSN (nil: unknown).
	LagBytes *int64 `json:"lag_bytes"`
	// LagSeconds estimates how far behind in time the subscriber is (nil:
	// unknown): 0 when caught up, else the WAL sender's replay_lag, else
	// the time since the subscriber last confirmed a position.
	LagSeconds         *float64   `json:"lag_seconds"`
	LastMsgSendTime    *time.Time `json:"last_msg_send_time,omitempty"`
	LastMsgReceiptTime *time.Time `json:"last_msg_receipt_time,omitempty"`
	LatestEndTime      *time.Time `json:"latest_end_time,omitempty"`
	// Problems explain a state other than streaming, each with what to do.
	Problems []string `json:"problems,omitempty"`
	// OtherSets are replication slots of ours on the source for the same
	// database that are not this pair's: another target's set, or one left
	// by an older run. They are shown, never touched.
	OtherSets []SetInfo `json:"other_sets"`
}

// GetStatus reports the sync state of database db: src is connected to the
// source database, dst to the target database (nil when it does not exist).
func GetStatus(ctx context.Context, src, dst pg.Querier, db string, n ObjectNames) (*Status, error) {
	st := &Status{Database: db, Subscription: n.Subscription, Slot: n.Slot, TablesNotReady: []TableState{}}
	slot, err := GetSlot(ctx, src, n.Slot)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var sub *SubInfo
	if !isNil(dst) {
		if sub, err = GetSubscription(ctx, dst, n.Subscription); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	}
	if slot != nil {
		st.SlotActive = slot.Active
		st.ConfirmedLSN = slot.ConfirmedFlushLSN
		var lag *int64
		if err := src.QueryRow(ctx, `
SELECT cur::text, CASE WHEN $1 = '' THEN NULL ELSE pg_wal_lsn_diff(cur, $1::pg_lsn)::bigint END
FROM (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS cur) s`,
			slot.ConfirmedFlushLSN).Scan(&st.SourceLSN, &lag); err != nil {
			return nil, fmt.Errorf("source: read WAL position: %w", err)
		}
		if lag != nil && *lag < 0 {
			zero := int64(0)
			lag = &zero
		}
		st.LagBytes = lag
	}
	if sub != nil {
		st.Enabled = sub.Enabled
		if err := readSubStats(ctx, dst, st); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
	}
	if st.LagBytes != nil && *st.LagBytes == 0 {
		z := 0.0
		st.LagSeconds = &z
	} else if slot != nil {
		var secs *float64
		// replay_lag needs pg_read_all_stats for other users' senders; NULL otherwise.
		err := src.QueryRow(ctx, `SELECT extract(epoch FROM coalesce(replay_lag, flush_lag, write_lag))::float8
FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1`, n.Subscription).Scan(&secs)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("source: read replication lag: %w", err)
		}
		if secs == nil && st.LatestEndTime != nil {
			s := time.Since(*st.LatestEndTime).Seconds()
			secs = &s
		}
		st.LagSeconds = secs
	}
	classify(st, slot, sub, !isNil(dst))
	sets, err := ListSets(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	st.OtherSets = []SetInfo{}
	for _, o := range sets {
		if o.Database == db && o.Slot != n.Slot {
			st.OtherSets = append(st.OtherSets, o)
		}
	}
	return st, nil
}

func readSubStats(ctx context.Context, dst pg.Querier, st *Status) error {
	var pid *int32
	var recv *string
	ver, err := pg.ServerVersion(ctx, dst)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	// From 16 on, parallel apply workers (streaming = parallel, the default
	// from 18) are listed with relid NULL too, without LSNs: read the leader.
	leader := ""
	if ver >= 160000 {
		leader = " AND leader_pid IS NULL"
	}
	err = dst.QueryRow(ctx, `
SELECT pid, received_lsn::text, last_msg_send_time, last_msg_receipt_time, latest_end_time
FROM pg_stat_subscription WHERE subname = $1 AND relid IS NULL`+leader, st.Subscription).
		Scan(&pid, &recv, &st.LastMsgSendTime, &st.LastMsgReceiptTime, &st.LatestEndTime)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read pg_stat_subscription: %w", err)
	}
	if pid != nil {
		st.WorkerPID = int(*pid)
	}
	if recv != nil {
		st.ReceivedLSN = *recv
	}
	rows, err := dst.Query(ctx, `
SELECT n.nspname || '.' || c.relname, r.srsubstate::text
FROM pg_subscription_rel r
JOIN pg_subscription s ON s.oid = r.srsubid
JOIN pg_class c ON c.oid = r.srrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY 1`, st.Subscription)
	if err != nil {
		return fmt.Errorf("read pg_subscription_rel: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableState, error) {
		var t TableState
		return t, r.Scan(&t.Table, &t.State)
	})
	if err != nil {
		return fmt.Errorf("read pg_subscription_rel: %w", err)
	}
	st.Tables = len(tables)
	for _, t := range tables {
		if t.State == "r" {
			continue
		}
		t.State = map[string]string{"i": "initializing", "d": "copying", "f": "copied", "s": "synchronized"}[t.State]
		st.TablesNotReady = append(st.TablesNotReady, t)
	}
	return nil
}

func classify(st *Status, slot *SlotInfo, sub *SubInfo, haveTarget bool) {
	switch {
	case slot == nil && sub == nil:
		st.State = StateNone
		if !haveTarget {
			st.Problems = append(st.Problems, "the target database does not exist: run init")
		}
	case slot == nil:
		st.State = StateBroken
		st.Problems = append(st.Problems, "the subscription exists but its slot "+st.Slot+" is missing on the source: changes since it vanished are lost; re-copy with init --drop-existing (or sync --force, then verify)")
	case slot.WALStatus == "lost":
		st.State = StateBroken
		st.Problems = append(st.Problems, "the source removed WAL the slot still needed (max_slot_wal_keep_size): changes are lost; re-copy with init --drop-existing")
	case sub == nil:
		st.State = StateNoSub
		st.Problems = append(st.Problems, "slot "+st.Slot+" exists on the source (retaining WAL) but the target has no subscription: run sync to attach one, or drop the slot on the source: SELECT pg_drop_replication_slot('"+st.Slot+"');")
	case !sub.Enabled:
		st.State = StateDisabled
		st.Problems = append(st.Problems, "the subscription is disabled (an apply error or ALTER SUBSCRIPTION … DISABLE): see the target's server log, then ALTER SUBSCRIPTION "+pg.Ident(st.Subscription)+" ENABLE;")
	case st.WorkerPID == 0 || !slot.Active:
		st.State = StateDown
		st.Problems = append(st.Problems, "the subscription is enabled but not streaming (worker restarting, source unreachable from the target, or an apply error): see the target's server log")
	case len(st.TablesNotReady) > 0:
		st.State = StateSyncing
	default:
		st.State = StateStreaming
	}
}

// WaitCaughtUp waits until the subscriber has applied everything committed
// on the source database before the call: it writes a marker into the
// source's WAL (pg_logical_emit_message) and waits until the slot's
// confirmed_flush_lsn passes it and every table of the subscription is
// ready. dst (the target database) may be nil to check the slot only. It
// fails early when the subscription is missing or disabled, and after
// timeout with the remaining lag.
func WaitCaughtUp(ctx context.Context, src, dst pg.Querier, n ObjectNames, timeout time.Duration) error {
	var mark string
	if err := src.QueryRow(ctx, "SELECT pg_logical_emit_message(false, 'seren', 'sync')::text").Scan(&mark); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return fmt.Errorf("source: mark WAL position: %w", err)
		}
		if err := src.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&mark); err != nil {
			return fmt.Errorf("source: read WAL position: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var confirmed *string
		var done bool
		var lag *int64
		err := src.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, coalesce(confirmed_flush_lsn >= $2::pg_lsn, false),
       pg_wal_lsn_diff($2::pg_lsn, confirmed_flush_lsn)::bigint
FROM pg_replication_slots WHERE slot_name = $1`, n.Slot, mark).Scan(&confirmed, &done, &lag)
		if errors.Is(err, pgx.ErrNoRows) {
			return hint.Wrap(fmt.Errorf("slot %s does not exist on the source", n.Slot), "run `status` to see what is set up; sync or init creates it")
		}
		if err != nil {
			if ctx.Err() != nil {
				return waitErr(ctx, n, timeout, lag)
			}
			return fmt.Errorf("source: read slot %s: %w", n.Slot, err)
		}
		ready := true
		if done && !isNil(dst) {
			sub, err := GetSubscription(ctx, dst, n.Subscription)
			if err != nil {
				return err
			}
			if sub == nil {
				return hint.Wrap(fmt.Errorf("subscription %s does not exist on the target", n.Subscription), "run sync to set it up")
			}
			var notReady int
			if err := dst.QueryRow(ctx, `SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
WHERE s.subname = $1 AND r.srsubstate <> 'r'`, n.Subscription).Scan(&notReady); err != nil {
				return fmt.Errorf("target: read table states: %w", err)
			}
			ready = notReady == 0
		}
		if done && ready {
			return nil
		}
		if !isNil(dst) {
			if sub, err := GetSubscription(ctx, dst, n.Subscription); err == nil && sub != nil && !sub.Enabled {
				return hint.Wrap(fmt.Errorf("subscription %s is disabled, so it will not catch up", n.Subscription),
					"check the target's server log for the apply error, fix it, then: ALTER SUBSCRIPTION "+pg.Ident(n.Subscription)+" ENABLE;")
			} else if err == nil && sub == nil {
				return hint.Wrap(fmt.Errorf("subscription %s does not exist on the target", n.Subscription), "run sync to set it up")
			}
		}
		select {
		case <-ctx.Done():
			return waitErr(ctx, n, timeout, lag)
		case <-tick.C:
		}
	}
}

func waitErr(ctx context.Context, n ObjectNames, timeout time.Duration, lag *int64) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		left := "unknown"
		if lag != nil {
			left = fmt.Sprintf("%d bytes", *lag)
		}
		return hint.Wrap(fmt.Errorf("subscription %s did not catch up within %s (%s behind)", n.Subscription, timeout, left),
			"raise --timeout, reduce the write load on the source, or check `status` for a stalled subscription")
	}
	return ctx.Err()
}
