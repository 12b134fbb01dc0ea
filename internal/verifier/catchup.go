package verifier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// subscription is a subscription on the target whose slot lives on the
// source, in the database being compared.
type subscription struct {
	Name, Slot string
	Enabled    bool
}

// pollInterval is how often catch-up is polled.
const pollInterval = 200 * time.Millisecond

// subscriptions finds the target's subscriptions in this database that
// replicate from the source: those whose slot exists on the source in the
// database of the same name. note explains when they could not be read.
func (d *dbRun) subscriptions(ctx context.Context) ([]subscription, string, error) {
	rows, err := d.dst.Query(ctx, `
SELECT s.subname, coalesce(s.subslotname::text, ''), s.subenabled
FROM pg_subscription s
WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY s.subname`)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return nil, "subscriptions on the target could not be read (permission denied): compared without waiting for replication to catch up", nil
		}
		return nil, "", fmt.Errorf("target database %s: list subscriptions: %w", d.name, err)
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[subscription])
	if err != nil {
		return nil, "", fmt.Errorf("target database %s: list subscriptions: %w", d.name, err)
	}
	var slots []string
	for _, s := range all {
		if s.Slot != "" {
			slots = append(slots, s.Slot)
		}
	}
	if len(slots) == 0 {
		return nil, "", nil
	}
	rows, err = d.src.Query(ctx, `
SELECT slot_name::text FROM pg_replication_slots
WHERE slot_type = 'logical' AND database = current_database() AND slot_name = ANY($1)`, slots)
	if err != nil {
		return nil, "", fmt.Errorf("source database %s: list replication slots: %w", d.name, err)
	}
	onSource, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, "", fmt.Errorf("source database %s: list replication slots: %w", d.name, err)
	}
	have := make(map[string]bool, len(onSource))
	for _, s := range onSource {
		have[s] = true
	}
	var out []subscription
	for _, s := range all {
		if have[s.Slot] {
			out = append(out, s)
		}
	}
	return out, "", nil
}

// catchUp takes the source's current WAL position and waits until every
// subscription's slot has confirmed it. It returns that position.
func (d *dbRun) catchUp(ctx context.Context, subs []subscription) (string, error) {
	var names, slots []string
	for _, s := range subs {
		names = append(names, s.Name)
		slots = append(slots, s.Slot)
		if !s.Enabled {
			return "", hint.Wrap(fmt.Errorf("database %s: subscription %s on the target is disabled, so the target cannot catch up with the source", d.name, s.Name),
				fmt.Sprintf("enable it (ALTER SUBSCRIPTION %s ENABLE) or run `postgres-seren-replicator sync`; to compare anyway, pass --catchup-timeout 0", s.Name))
		}
	}
	// The insert position, not pg_current_wal_lsn(): with asynchronous
	// commit the write position can lag behind transactions already
	// committed.
	var lsn string
	err := d.src.QueryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END)::text`).Scan(&lsn)
	if err != nil {
		return "", fmt.Errorf("source database %s: read WAL position: %w", d.name, err)
	}
	d.logf("waiting for subscription %s to confirm source WAL position %s", strings.Join(names, ", "), lsn)
	start := d.opts.Now()
	wctx, cancel := context.WithTimeout(ctx, d.opts.CatchupTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var behind []string
	for {
		behind = behind[:0]
		rows, err := d.src.Query(wctx, `
SELECT slot_name::text, coalesce(confirmed_flush_lsn::text, 'none'), coalesce(confirmed_flush_lsn >= $1::pg_lsn, false)
FROM pg_replication_slots WHERE slot_name = ANY($2)`, lsn, slots)
		if err == nil {
			found := 0
			for rows.Next() {
				var slot, confirmed string
				var ok bool
				if err = rows.Scan(&slot, &confirmed, &ok); err != nil {
					break
				}
				found++
				if !ok {
					behind = append(behind, fmt.Sprintf("slot %s confirmed %s", slot, confirmed))
				}
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
			if err == nil && found < len(slots) {
				return "", hint.Wrap(fmt.Errorf("database %s: a replication slot of subscription %s disappeared from the source while waiting for catch-up", d.name, strings.Join(names, ", ")),
					"check `postgres-seren-replicator status`; re-create replication with `postgres-seren-replicator sync --force`")
			}
		}
		if err != nil && wctx.Err() == nil {
			return "", fmt.Errorf("source database %s: read replication slots: %w", d.name, err)
		}
		if err == nil && len(behind) == 0 {
			// Tables still in their initial copy are not comparable yet.
			var notReady int
			err = d.dst.QueryRow(wctx, `
SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
WHERE s.subname = ANY($1) AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND r.srsubstate <> 'r'`, names).Scan(&notReady)
			if err != nil && wctx.Err() == nil {
				return "", fmt.Errorf("target database %s: read subscription table states: %w", d.name, err)
			}
			if notReady > 0 {
				behind = append(behind, fmt.Sprintf("%d table(s) still in their initial copy", notReady))
			}
		}
		if err == nil && len(behind) == 0 {
			d.logf("subscriber caught up with %s after %s", lsn, d.opts.Now().Sub(start).Round(time.Millisecond))
			return lsn, nil
		}
		select {
		case <-tick.C:
		case <-wctx.Done():
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", hint.Wrap(fmt.Errorf("database %s: the target could not catch up with the source within %s (source at WAL position %s; %s), so it cannot be compared consistently",
				d.name, d.opts.CatchupTimeout, lsn, strings.Join(behind, "; ")),
				"check `postgres-seren-replicator status` (is the subscription's worker running? see the target's log), raise --catchup-timeout, or pause writes on the source; --catchup-timeout 0 compares without waiting")
		}
	}
}
