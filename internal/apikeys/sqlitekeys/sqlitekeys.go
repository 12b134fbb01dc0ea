// Package sqlitekeys is the embedded API key store: the api_keys table of
// the service's SQLite file (internal/sqlitedb) holds, per key, a stable id,
// a name, its principal (the owner recorded on jobs; default the name), an
// operator flag, and the SHA-256 of the secret; the
// secret itself is shown once by Create and never stored. Several keys can
// be active at once so they can be rotated; a name is unique among active
// keys. Nothing is cached: a revoked key stops working at once.
package sqlitekeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

// lastUsedEvery limits last_used_at writes, so verifying a busy key does
// not turn every API request into a database write.
const lastUsedEvery = time.Minute

// maxSecretLen bounds what Verify hashes.
const maxSecretLen = 256

// Keys implements apikeys.Verifier and apikeys.Manager on a database
// opened by sqlitedb.Open.
type Keys struct {
	db  *sql.DB
	st  *sqlitedb.Stmts // Verify runs on every API request
	now func() time.Time
}

var (
	_ apikeys.Verifier = (*Keys)(nil)
	_ apikeys.Manager  = (*Keys)(nil)
)

// New returns the key store on db (the caller owns db). now defaults to
// time.Now.
func New(db *sql.DB, now func() time.Time) *Keys {
	if now == nil {
		now = time.Now
	}
	return &Keys{db: db, st: sqlitedb.NewStmts(db), now: now}
}

// ValidateName checks a key name: 1 to 64 letters, digits, '.', '_' or '-'.
func ValidateName(name string) error {
	if name == "" || len(name) > 64 {
		return hint.Wrap(fmt.Errorf("invalid key name %q: want 1 to 64 characters", name), "use a short name such as ci or alice-laptop")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return hint.Wrap(fmt.Errorf("invalid key name %q: only letters, digits, '.', '_' and '-' are allowed", name),
				"use a short name such as ci or alice-laptop")
		}
	}
	return nil
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Create issues a new key and returns its secret.
func (k *Keys) Create(ctx context.Context, name string, o apikeys.CreateOptions) (string, error) {
	if err := ValidateName(name); err != nil {
		return "", err
	}
	principal := o.Principal
	if principal == "" {
		principal = name
	}
	if err := ValidateName(principal); err != nil {
		return "", fmt.Errorf("principal: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("create key %s: %w", name, err)
	}
	secret := apikeys.SecretPrefix + base64.RawURLEncoding.EncodeToString(raw)
	clear(raw)
	idRaw := make([]byte, 8)
	if _, err := rand.Read(idRaw); err != nil {
		return "", fmt.Errorf("create key %s: %w", name, err)
	}
	id := "key_" + hex.EncodeToString(idRaw)
	_, err := k.db.ExecContext(ctx, `INSERT INTO api_keys (id, name, principal, operator, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		id, name, principal, o.Operator, hash(secret), sqlitedb.Nanos(k.now()))
	if sqlitedb.IsConstraint(err) {
		return "", hint.Wrap(fmt.Errorf("create key %s: %w", name, apikeys.ErrNameTaken),
			fmt.Sprintf("choose another --name, or revoke the old key first: keys revoke %s", name))
	}
	if err != nil {
		return "", fmt.Errorf("create key %s: %w", name, err)
	}
	return secret, nil
}

// List returns every key, revoked ones included, oldest first.
func (k *Keys) List(ctx context.Context) ([]apikeys.KeyInfo, error) {
	rows, err := k.db.QueryContext(ctx, `SELECT id, name, principal, operator, created_at, revoked_at, last_used_at
		FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	out := []apikeys.KeyInfo{}
	for rows.Next() {
		var (
			ki                apikeys.KeyInfo
			created           int64
			revoked, lastUsed sql.NullInt64
		)
		if err := rows.Scan(&ki.ID, &ki.Name, &ki.Principal, &ki.Operator, &created, &revoked, &lastUsed); err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		ki.CreatedAt = sqlitedb.Time(created)
		ki.RevokedAt = optTime(revoked)
		ki.LastUsedAt = optTime(lastUsed)
		out = append(out, ki)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

func optTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := sqlitedb.Time(n.Int64)
	return &t
}

// Revoke revokes the active key named name and reports whether it was its
// principal's last active key.
func (k *Keys) Revoke(ctx context.Context, name string) (apikeys.Revoked, error) {
	tx, err := k.db.BeginTx(ctx, nil)
	if err != nil {
		return apikeys.Revoked{}, fmt.Errorf("revoke key %s: %w", name, err)
	}
	defer tx.Rollback()
	var (
		r       apikeys.Revoked
		created int64
	)
	err = tx.QueryRowContext(ctx, `SELECT id, name, principal, operator, created_at FROM api_keys WHERE name = ? AND revoked_at IS NULL`,
		name).Scan(&r.Key.ID, &r.Key.Name, &r.Key.Principal, &r.Key.Operator, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return apikeys.Revoked{}, hint.Wrap(fmt.Errorf("revoke key %q: %w", name, apikeys.ErrNotFound), "see the active keys with: keys list")
	}
	if err != nil {
		return apikeys.Revoked{}, fmt.Errorf("revoke key %s: %w", name, err)
	}
	now := k.now()
	if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ?`, sqlitedb.Nanos(now), r.Key.ID); err != nil {
		return apikeys.Revoked{}, fmt.Errorf("revoke key %s: %w", name, err)
	}
	var left int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_keys WHERE principal = ? AND revoked_at IS NULL`,
		r.Key.Principal).Scan(&left); err != nil {
		return apikeys.Revoked{}, fmt.Errorf("revoke key %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return apikeys.Revoked{}, fmt.Errorf("revoke key %s: %w", name, err)
	}
	r.Key.CreatedAt = sqlitedb.Time(created)
	r.Key.RevokedAt = &now
	r.LastOfPrincipal = left == 0
	return r, nil
}

// Verify returns who holds the active key whose secret is presented.
func (k *Keys) Verify(ctx context.Context, secret string) (apikeys.Identity, error) {
	if !strings.HasPrefix(secret, apikeys.SecretPrefix) || len(secret) > maxSecretLen {
		return apikeys.Identity{}, apikeys.ErrInvalid
	}
	var (
		id       apikeys.Identity
		lastUsed sql.NullInt64
	)
	err := k.st.QueryRow(ctx, `SELECT id, principal, operator, last_used_at FROM api_keys WHERE hash = ? AND revoked_at IS NULL`,
		hash(secret)).Scan(&id.KeyID, &id.Principal, &id.Operator, &lastUsed)
	if errors.Is(err, sql.ErrNoRows) {
		return apikeys.Identity{}, apikeys.ErrInvalid
	}
	if err != nil {
		return apikeys.Identity{}, fmt.Errorf("verify API key: %w", err)
	}
	if id.Principal == "" {
		return apikeys.Identity{}, apikeys.ErrInvalid
	}
	now := k.now()
	if !lastUsed.Valid || now.Sub(sqlitedb.Time(lastUsed.Int64)) >= lastUsedEvery {
		// Best effort: a busy database must not fail authentication.
		_, _ = k.db.ExecContext(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ?`, sqlitedb.Nanos(now), id.KeyID)
	}
	return id, nil
}
