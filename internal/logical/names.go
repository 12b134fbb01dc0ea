package logical

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// maxNameLen is PostgreSQL's identifier limit (NAMEDATALEN - 1).
const maxNameLen = 63

// namePrefix starts every object name we create, so status, teardown and
// validate can tell our objects from the user's.
const namePrefix = "seren_"

// ObjectNames are the names of the replication objects of one (source
// database, target database) pair. The three are equal by design:
// CreateSlot finds the publication through it, and an operator sees at
// once which slot serves which subscription.
type ObjectNames struct {
	Publication  string // on the source database
	Slot         string // on the source server (slot names are server-wide)
	Subscription string // on the target database
}

// legacyNames are the names used before replication sets were owned by a
// (source, target) pair: "seren_", the database name lowercased with every
// character outside [a-z0-9_] replaced by "_" and truncated, "_", and 8 hex
// digits of the SHA-256 of the exact name. Sets created that way are still
// found (see NamesFor) but never created any more: two targets of one
// source database would share them.
func legacyNames(db string) ObjectNames {
	return names(db, "_"+hash8(db))
}

// PairNames returns the replication object names for copying source
// database db into the database of the same name on the target server
// whose identity is targetID (see TargetID): "seren_", the sanitized
// database name (truncated), "_", 8 hex digits of the SHA-256 of the exact
// name, "_", 8 hex digits of the SHA-256 of the pair (database name and
// target identity). The result is a valid slot name ([a-z0-9_], at most 63
// bytes), is the same on every run for the same pair, differs for
// databases whose names differ only in case or punctuation, and differs
// for two targets of the same source database, so one target's init, sync
// or cutover never touches another's set.
func PairNames(db, targetID string) ObjectNames {
	return names(db, "_"+hash8(db)+"_"+hash8("pair\x00"+db+"\x00"+targetID+"\x00"+db))
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

func names(db, suffix string) ObjectNames {
	keep := maxNameLen - len(namePrefix) - len(suffix)
	var b strings.Builder
	for i := 0; i < len(db) && b.Len() < keep; i++ {
		c := db[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte('_')
		}
	}
	n := namePrefix + b.String() + suffix
	return ObjectNames{Publication: n, Slot: n, Subscription: n}
}

// IsOurs reports whether name looks like one PairNames (or the legacy
// naming) produces.
func IsOurs(name string) bool {
	if !strings.HasPrefix(name, namePrefix) || len(name) < len(namePrefix)+9 {
		return false
	}
	h := name[len(name)-9:]
	if h[0] != '_' {
		return false
	}
	_, err := hex.DecodeString(h[1:])
	return err == nil
}

// TargetID identifies a PostgreSQL server for pair naming: its system
// identifier (pg_control_system, the same for every database of the
// server and kept by pg_upgrade-free restarts), or, when the role may not
// read it, the server's address and port. q is connected to any database
// of that server.
func TargetID(ctx context.Context, q pg.Querier) (string, error) {
	var id string
	err := q.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&id)
	if err == nil && id != "" {
		return id, nil
	}
	if err2 := q.QueryRow(ctx, "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')").Scan(&id); err2 != nil {
		return "", fmt.Errorf("identify server: %w", errors.Join(err, err2))
	}
	return "addr:" + id, nil
}

// NamesFor returns the names of the replication set of source database db
// and the target server identified by targetID. dstDB is connected to the
// target database (nil when it does not exist). A set created before pair
// naming (legacy names) is still found: when the target database holds a
// subscription by the legacy name and none by the pair name, the legacy
// names are returned — a subscription in this target database is this
// pair's by construction.
func NamesFor(ctx context.Context, targetID string, dstDB pg.Querier, db string) (ObjectNames, error) {
	n := PairNames(db, targetID)
	if isNil(dstDB) {
		return n, nil
	}
	old := legacyNames(db)
	var pair, legacy bool
	err := dstDB.QueryRow(ctx, `SELECT
  EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
  EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $2 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))`,
		n.Subscription, old.Subscription).Scan(&pair, &legacy)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return n, fmt.Errorf("target: look for subscriptions of database %s: %w", db, err)
	}
	if legacy && !pair {
		return old, nil
	}
	return n, nil
}

// pairComment is the comment recorded on the publication (source side)
// and the subscription (target side) of a pair, naming both ends.
func pairComment(db, sourceID, targetID string) string {
	return fmt.Sprintf("postgres-seren-replicator: source %s database %s -> target %s database %s", sourceID, db, targetID, db)
}

// RecordPair comments the publication on the source (src, connected to the
// source database) and, when withSubscription, the subscription on the
// target database (dst) with the pair they belong to, so an operator
// looking at either side sees which target (or source) the set serves.
func RecordPair(ctx context.Context, src, dst pg.Querier, n ObjectNames, db string, withSubscription bool) error {
	sid, err := TargetID(ctx, src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	tid, err := TargetID(ctx, dst)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	c := pairComment(db, sid, tid)
	if _, err := src.Exec(ctx, "COMMENT ON PUBLICATION "+pg.Ident(n.Publication)+" IS "+pg.Literal(c)); err != nil {
		return fmt.Errorf("source: record the pair on publication %s: %w", n.Publication, err)
	}
	if withSubscription {
		if _, err := dst.Exec(ctx, "COMMENT ON SUBSCRIPTION "+pg.Ident(n.Subscription)+" IS "+pg.Literal(c)); err != nil {
			return fmt.Errorf("target: record the pair on subscription %s: %w", n.Subscription, err)
		}
	}
	return nil
}

// ResolveNames is NamesFor for callers holding URLs: the target's identity
// is read through dstDB (connected to the target database), or, when that
// database does not exist (dstDB nil), through the target server's admin
// database.
func ResolveNames(ctx context.Context, target pg.URL, dstDB pg.Querier, db string) (ObjectNames, error) {
	q := dstDB
	if isNil(q) {
		c, err := pg.Connect(ctx, target.WithDatabase("postgres"), "target")
		if err != nil {
			return ObjectNames{}, err
		}
		defer c.Close(context.WithoutCancel(ctx))
		q = c
	}
	tid, err := TargetID(ctx, q)
	if err != nil {
		return ObjectNames{}, fmt.Errorf("target: %w", err)
	}
	return NamesFor(ctx, tid, dstDB, db)
}

// SetInfo is one replication slot of ours on the source server.
type SetInfo struct {
	Slot     string `json:"slot"`
	Database string `json:"database"`
	Active   bool   `json:"active"`
	// Pair is the publication's comment naming the target, when the
	// publication is in the database q is connected to ("" otherwise).
	Pair string `json:"pair,omitempty"`
}

// ListSets lists every replication slot of ours on the source server (all
// databases, all targets), so status can show what exists besides the set
// being looked at.
func ListSets(ctx context.Context, q pg.Querier) ([]SetInfo, error) {
	rows, err := q.Query(ctx, `
SELECT s.slot_name::text, coalesce(s.database::text, ''), s.active,
       coalesce((SELECT obj_description(p.oid, 'pg_publication') FROM pg_publication p
                 WHERE p.pubname = s.slot_name AND s.database = current_database()), '')
FROM pg_replication_slots s WHERE s.slot_type = 'logical' ORDER BY 2, 1`)
	if err != nil {
		return nil, fmt.Errorf("list replication slots: %w", err)
	}
	var out []SetInfo
	var s SetInfo
	if _, err := pgx.ForEachRow(rows, []any{&s.Slot, &s.Database, &s.Active, &s.Pair}, func() error {
		if IsOurs(s.Slot) {
			out = append(out, s)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list replication slots: %w", err)
	}
	return out, nil
}
