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
	// ID is the key's stable, non-secret id.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Principal is who the key belongs to: jobs are recorded under it, so
	// every key of one principal sees the same jobs (rotation keeps them).
	Principal string `json:"principal"`
	// Operator keys may read, list and cancel the jobs of every principal.
	Operator   bool       `json:"operator,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Identity is who presented a key.
type Identity struct {
	// KeyID is the key's id (for logs).
	KeyID string
	// Principal owns the jobs the key submits (jobs.Job.Owner).
	Principal string
	// Operator may read, list and cancel any principal's jobs.
	Operator bool
}

// CreateOptions are the optional settings of a new key.
type CreateOptions struct {
	// Principal the key belongs to; default: the key's name.
	Principal string
	// Operator marks a key that may act on every principal's jobs.
	Operator bool
}

// Revoked describes a key that Revoke revoked.
type Revoked struct {
	Key KeyInfo
	// LastOfPrincipal: the principal has no active key left.
	LastOfPrincipal bool
}

// Manager issues and revokes keys (embedded: apikeys/sqlitekeys; on AWS
// keys live in SSM and are managed by the operator).
type Manager interface {
	// Create issues a key named name and returns its secret, which is
	// shown once and stored only hashed.
	Create(ctx context.Context, name string, o CreateOptions) (secret string, err error)
	// List returns every key, revoked ones included, oldest first.
	List(ctx context.Context) ([]KeyInfo, error)
	// Revoke revokes the active key named name (ErrNotFound).
	Revoke(ctx context.Context, name string) (Revoked, error)
}

// Verifier is what a backend implements.
type Verifier interface {
	// Verify returns who holds a presented secret (ErrInvalid for a
	// missing, unknown or revoked key).
	Verify(ctx context.Context, secret string) (Identity, error)
}
