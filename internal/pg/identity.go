package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// ErrSameServer is returned when source and target are one PostgreSQL
// server: writing to the "target" would change (or drop) the source.
var ErrSameServer = errors.New("source and target are the same PostgreSQL server")

// Identity describes which server a connection reached. Every field is
// readable by an ordinary user; fields the user may not read stay empty.
type Identity struct {
	// SystemID is pg_control_system().system_identifier: shared by a
	// server, its physical standbys and clones made from a base backup.
	SystemID string
	// Started is pg_postmaster_start_time() as epoch microseconds: the
	// same value on two connections means one running server.
	Started string
	// DataDir and Addr ("inet_server_addr:port") are a second signal.
	DataDir string
	Addr    string
}

// Identify reads the identity of the server q is connected to. It must
// run outside a failed transaction: queries that need a privilege the
// user lacks are skipped, not fatal.
func Identify(ctx context.Context, q Querier) (Identity, error) {
	var id Identity
	if err := q.QueryRow(ctx, `SELECT (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint::text,
coalesce(host(inet_server_addr()) || ':' || inet_server_port(), '')`).Scan(&id.Started, &id.Addr); err != nil {
		return Identity{}, fmt.Errorf("read server identity: %w", err)
	}
	// pg_control_system() and data_directory need privileges on some
	// versions; without them the start time decides.
	var sys *string
	if err := q.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&sys); err == nil && sys != nil {
		id.SystemID = *sys
	}
	var dir *string
	if err := q.QueryRow(ctx, "SELECT current_setting('data_directory', true)").Scan(&dir); err == nil && dir != nil {
		id.DataDir = *dir
	}
	return id, nil
}

// SameServer reports whether a and b describe one running server, and
// why. One server has one postmaster start time; a standby or a clone
// started at another moment, and shares at most the system identifier.
func SameServer(a, b Identity) (bool, string) {
	if a.Started == "" || a.Started != b.Started {
		return false, ""
	}
	if a.SystemID != "" && b.SystemID != "" {
		if a.SystemID != b.SystemID {
			return false, ""
		}
		return true, "both report system identifier " + a.SystemID + " and the same start time"
	}
	if a.DataDir != "" && b.DataDir != "" && a.DataDir != b.DataDir {
		return false, ""
	}
	return true, "both report the same server start time"
}

// RefuseSameServer returns ErrSameServer (with a hint) when src and dst
// are connected to one server. Call it before anything is created or
// dropped on the target.
func RefuseSameServer(ctx context.Context, src, dst Querier, srcURL, dstURL URL) error {
	a, err := Identify(ctx, src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	b, err := Identify(ctx, dst)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if same, why := SameServer(a, b); same {
		return hint.Wrap(fmt.Errorf("source %s and target %s: %w (%s); refusing to write to the source", srcURL, dstURL, ErrSameServer, why),
			"point --target at a different server: replicating a server into itself would overwrite or drop the source's databases")
	}
	return nil
}
