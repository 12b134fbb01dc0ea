package logical

import (
	"context"
	"errors"
	"reflect"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Teardown removes the replication objects of one database: the
// subscription from the target database (dst), then the slot and the
// publication from the source database (src). Either connection may be nil
// to skip that side (e.g. init failed before touching the target). It is
// idempotent: objects already gone are fine. Afterwards the source retains
// no WAL for this database.
//
// The subscription goes first and is detached from its slot before it is
// dropped, so dropping it never needs the source; the slot is dropped once
// its WAL sender has gone (see DropSlot).
func Teardown(ctx context.Context, src, dst pg.Querier, n ObjectNames) error {
	var errs []error
	if !isNil(dst) {
		if err := DropSubscription(ctx, dst, n.Subscription); err != nil {
			errs = append(errs, err)
		}
	}
	if !isNil(src) {
		if err := DropSlot(ctx, src, n.Slot); err != nil {
			errs = append(errs, err)
		}
		if err := DropPublication(ctx, src, n.Publication); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isNil reports whether q is nil or a typed nil pointer (a nil *pgx.Conn
// passed as pg.Querier).
func isNil(q pg.Querier) bool {
	if q == nil {
		return true
	}
	v := reflect.ValueOf(q)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
