// Package secrets seals job credentials with envelope encryption: a fresh
// data key per job encrypts the credentials with AES-256-GCM, and the data
// key is itself wrapped by a master key (a local key file embedded, KMS on
// AWS). The job id is bound as additional authenticated data / encryption
// context, so a blob cannot be moved to another job.
// Keeper is the portable part; a backend implements KeyWrapper
// (secrets/localkey embedded, KMS on AWS). secrets/secretstest is the
// conformance suite.
package secrets

import "context"

// KeyWrapper wraps and unwraps data keys: what a backend implements. The
// portable Keeper does the rest (the data encryption, the blob format).
// Implementations are safe for concurrent use.
type KeyWrapper interface {
	// NewDataKey returns a fresh 32-byte data key and its wrapped form
	// (at most 65535 bytes), bound to context (KMS encryption context).
	NewDataKey(ctx context.Context, context map[string]string) (plain, wrapped []byte, err error)
	// Unwrap returns the plaintext data key. A context other than the one
	// given to NewDataKey fails with an error matching ErrDecrypt.
	Unwrap(ctx context.Context, wrapped []byte, context map[string]string) ([]byte, error)
	Close() error
}
