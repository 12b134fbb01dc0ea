package logical

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// ErrNeedsCopy is returned when sync finds a state it cannot make
// consistent without a fresh copy of the data.
var ErrNeedsCopy = errors.New("the target cannot be made consistent without a fresh copy")

// SyncOptions configure SyncDatabase.
type SyncOptions struct {
	Rules *selection.Rules
	// Force drops whatever exists of ours and sets sync up afresh from the
	// source's current position.
	Force bool
	Sub   SubOptions
}

// Sync actions reported in SyncResult.Action.
const (
	SyncCreated   = "created"   // publication, slot and subscription set up now
	SyncUnchanged = "unchanged" // everything was in place
	SyncRepaired  = "repaired"  // in place, but re-enabled or its connection updated
	SyncRecreated = "recreated" // --force: dropped and set up afresh
)

// SyncResult says what SyncDatabase did for one database.
type SyncResult struct {
	Database string `json:"database"`
	Action   string `json:"action"`
	ObjectNames
	// StartLSN is the source position replication starts from (new slots).
	StartLSN string `json:"start_lsn,omitempty"`
	// Notes are what the user must know about consistency.
	Notes []string `json:"notes,omitempty"`
}

// SyncDatabase sets up (or checks, or with Force recreates) continuous
// replication of database db into a target database that already holds
// its data: src and dst are URLs of that database on each server. It
// refuses, with an error wrapping ErrNeedsCopy, when what exists cannot be
// made consistent without a fresh copy.
func SyncDatabase(ctx context.Context, src, dst pg.URL, db string, opts SyncOptions) (*SyncResult, error) {
	res := &SyncResult{Database: db}
	s, err := pg.Connect(ctx, src, "source")
	if err != nil {
		return nil, err
	}
	defer s.Close(ctx)
	d, err := ConnectIfExists(ctx, dst, "target")
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, hint.Wrap(fmt.Errorf("target database %s does not exist: %w", db, ErrNeedsCopy),
			"sync only replicates into a target that already holds the data: run init to copy it")
	}
	defer d.Close(ctx)
	if err := pg.RefuseSameServer(ctx, s, d, src, dst); err != nil {
		return nil, err
	}
	n, err := ResolveNames(ctx, dst, d, db)
	if err != nil {
		return nil, err
	}
	res.ObjectNames = n

	specs, err := PublicationTables(ctx, s, db, opts.Rules)
	if err != nil {
		return nil, err
	}
	pubExists, err := PublicationExists(ctx, s, n.Publication)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	slot, err := GetSlot(ctx, s, n.Slot)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	sub, err := GetSubscription(ctx, d, n.Subscription)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}

	if opts.Force {
		if err := checkTargetHoldsData(ctx, s, d, db, specs, true); err != nil {
			return nil, err
		}
		if err := Teardown(ctx, s, d, n); err != nil {
			return nil, fmt.Errorf("--force: remove the existing set-up: %w", err)
		}
		res.Action = SyncRecreated
		if slot != nil || sub != nil {
			res.Notes = append(res.Notes, "replication now starts from the source's current position: changes the old set-up had not yet applied are not on the target; run verify once the lag is zero")
		}
		return res, create(ctx, s, d, src, db, specs, opts, res)
	}

	needsCopy := func(why string) error {
		return hint.Wrap(fmt.Errorf("database %s: %s: %w", db, why, ErrNeedsCopy),
			"re-copy with `init --drop-existing`, or accept the gap with `sync --force` (starts from now) and check with `verify`")
	}
	switch {
	case slot != nil && slot.WALStatus == "lost":
		return nil, needsCopy(fmt.Sprintf("slot %s has lost WAL it still needed (max_slot_wal_keep_size), so changes are missing", n.Slot))
	case slot != nil && sub == nil:
		return nil, needsCopy(fmt.Sprintf("slot %s exists on the source but the target has no subscription, so where the target stopped is unknown: rows could be missing or applied twice", n.Slot))
	case slot == nil && sub != nil:
		return nil, needsCopy(fmt.Sprintf("subscription %s exists on the target but its slot %s is gone from the source, so changes since then are lost", n.Subscription, n.Slot))
	case slot != nil && sub != nil && !pubExists:
		return nil, needsCopy(fmt.Sprintf("publication %s is missing on the source, and a new one would be invisible to the existing slot", n.Publication))
	case slot != nil && sub != nil:
		if err := CreatePublication(ctx, s, n.Publication, specs); err != nil {
			return nil, err
		}
		// Idempotent: re-enables a disabled subscription and updates
		// changed credentials; refuses a different slot or source.
		if err := CreateSubscription(ctx, d, n.Subscription, src, n.Publication, n.Slot, opts.Sub); err != nil {
			return nil, err
		}
		after, err := GetSubscription(ctx, d, n.Subscription)
		if err != nil {
			return nil, err
		}
		res.Action = SyncUnchanged
		if after != nil && (after.Enabled != sub.Enabled || after.connInfo != sub.connInfo) {
			res.Action = SyncRepaired
		}
		return res, nil
	}
	// Nothing that holds a position exists: set up from now. A lone
	// publication holds no state; recreate it if its definition differs.
	if pubExists {
		if err := CreatePublication(ctx, s, n.Publication, specs); errors.Is(err, ErrConflict) {
			if err := DropPublication(ctx, s, n.Publication); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
	}
	if err := checkTargetHoldsData(ctx, s, d, db, specs, opts.Force); err != nil {
		return nil, err
	}
	res.Action = SyncCreated
	res.Notes = append(res.Notes, "replication starts from the source's current position: the target must already hold every row committed until now (changes made between your copy and now are not replicated); run verify once the lag is zero")
	return res, create(ctx, s, d, src, db, specs, opts, res)
}

func create(ctx context.Context, s, d *pgx.Conn, src pg.URL, db string, specs []TableSpec, opts SyncOptions, res *SyncResult) error {
	n := res.ObjectNames
	if err := CreatePublication(ctx, s, n.Publication, specs); err != nil {
		return err
	}
	slot, err := CreateSlot(ctx, src, n.Slot)
	if err != nil {
		return err
	}
	res.StartLSN = slot.ConsistentLSN()
	if err := slot.Close(ctx); err != nil {
		_ = slot.Drop(ctx)
		return err
	}
	if err := CreateSubscription(ctx, d, n.Subscription, src, n.Publication, n.Slot, opts.Sub); err != nil {
		// Never leave a slot retaining WAL for a subscription that failed.
		_ = slot.Drop(ctx)
		return err
	}
	return RecordPair(ctx, s, d, n, db, true)
}

// checkTargetHoldsData refuses to start replication into a target that
// lacks a published table (the subscription would fail) or holds none of
// the rows of a table that has rows on the source (sync copies nothing).
func checkTargetHoldsData(ctx context.Context, s, d *pgx.Conn, db string, specs []TableSpec, force bool) error {
	if specs == nil {
		var err error
		if specs, err = allUserTables(ctx, s); err != nil {
			return fmt.Errorf("source database %s: %w", db, err)
		}
	}
	var missing, empty []string
	for _, t := range specs {
		var exists bool
		if err := d.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pg.Ident(t.Schema, t.Name)).Scan(&exists); err != nil {
			return fmt.Errorf("target database %s: look up %s: %w", db, t, err)
		}
		if !exists {
			missing = append(missing, t.String())
			continue
		}
		var dstHas bool
		srcHas, err := sourceHasRows(ctx, s, t)
		if err != nil {
			return fmt.Errorf("source database %s: read %s: %w", db, t, err)
		}
		if !srcHas {
			continue
		}
		if err := d.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+pg.Ident(t.Schema, t.Name)+")").Scan(&dstHas); err != nil {
			return fmt.Errorf("target database %s: read %s: %w", db, t, err)
		}
		if !dstHas {
			empty = append(empty, t.String())
		}
	}
	if len(missing) > 0 {
		return hint.Wrap(fmt.Errorf("database %s: the target lacks %s: %w", db, list(missing), ErrNeedsCopy),
			"sync does not create tables or copy rows: run init (or restore the schema and data on the target first)")
	}
	if len(empty) > 0 && !force {
		return hint.Wrap(fmt.Errorf("database %s: %s hold rows on the source but none on the target: %w", db, list(empty), ErrNeedsCopy),
			"sync does not copy rows: run init to copy them (or --force if the target really should start empty)")
	}
	return nil
}

// sourceHasRows reports whether t has a row its row filter keeps. The
// filter runs in a READ ONLY transaction under standard literal rules.
func sourceHasRows(ctx context.Context, s *pgx.Conn, t TableSpec) (bool, error) {
	tx, err := s.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	if _, err := tx.Exec(ctx, selection.SessionSetup); err != nil {
		return false, fmt.Errorf("set up session: %w", err)
	}
	where := ""
	if t.RowFilter != "" {
		where = " WHERE (" + t.RowFilter + ")"
	}
	var has bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+pg.Ident(t.Schema, t.Name)+where+")").Scan(&has); err != nil {
		return false, err
	}
	return has, nil
}

func list(names []string) string {
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more tables", len(names)-5)
	}
	if len(names) == 1 {
		return "table " + names[0]
	}
	return "tables " + strings.Join(names, ", ")
}
