// Package apikeys authenticates API keys. Keys are stored hashed (SHA-256
// of the secret); several may be active at once so they can be rotated.
// Embedded: a SQLite table managed by `keys create/list/revoke`; AWS: SSM
// Parameter Store SecureString, cached briefly so rotation needs no redeploy.
package apikeys

import (
	"context"
	"errors"
)

// ErrInvalid is returned for a missing, unknown or revoked key.
var ErrInvalid = errors.New("invalid API key")

// Verifier is what a backend implements.
type Verifier interface {
	// Verify returns the key's owner id for a presented secret.
	Verify(ctx context.Context, secret string) (owner string, err error)
}
