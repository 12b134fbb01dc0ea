// Package apikeys authenticates API keys. Keys are stored hashed (SHA-256
// of the secret); several may be active at once so they can be rotated.
// Embedded: a SQLite table managed by `keys create/list/revoke`; AWS: SSM
// Parameter Store SecureString, cached briefly so rotation needs no redeploy.
package apikeys

import (
	"context"
	"errors"
	"time"
)

// Errors; test with errors.Is.
var (
	// ErrInvalid is returned for a missing, unknown or revoked key.
	ErrInvalid = errors.New("invalid API key")
	// ErrNotFound: no active key has that name (revoke).
	ErrNotFound = errors.New("no active API key with that name")
	// ErrNameTaken: an active key already has that name (create).
	ErrNameTaken = errors.New("an active API key already has that name")
)

// SecretPrefix starts every secret the embedded service issues.
const SecretPrefix = "sk_live_"

// KeyInfo describes a key without its secret.
type KeyInfo struct {
	// ID is the stable owner id jobs are recorded under (not secret).
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Manager issues and revokes keys (embedded: apikeys/sqlitekeys; on AWS
// keys live in SSM and are managed by the operator).
type Manager interface {
	// Create issues a key named name and returns its secret, which is
	// shown once and stored only hashed.
	Create(ctx context.Context, name string) (secret string, err error)
	// List returns every key, revoked ones included, oldest first.
	List(ctx context.Context) ([]KeyInfo, error)
	// Revoke revokes the active key named name (ErrNotFound).
	Revoke(ctx context.Context, name string) error
}

// Verifier is what a backend implements.
type Verifier interface {
	// Verify returns the key's owner id for a presented secret.
	Verify(ctx context.Context, secret string) (owner string, err error)
}
