package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// Errors Keeper.Open returns; test with errors.Is.
var (
	// ErrMalformed: the blob is not sealed credentials of a known version.
	ErrMalformed = errors.New("sealed credentials are malformed")
	// ErrDecrypt: the blob does not open with this job id and master key
	// (wrong job, different master key, or tampered). KeyWrapper.Unwrap
	// returns it too when the wrapped key or its context do not match.
	ErrDecrypt = errors.New("sealed credentials do not open: wrong job, different master key, or tampered")
)

// blobVersion is the first byte of every sealed blob.
//
// Version 1 layout:
//
//	[0]         version (1)
//	[1:3]       length L of the wrapped data key, big endian
//	[3:3+L]     wrapped data key (opaque to the Keeper; the KeyWrapper's format)
//	[3+L:15+L]  12-byte random GCM nonce
//	[15+L:]     AES-256-GCM ciphertext with its 16-byte tag
//
// The GCM additional data binds the version and the job id.
const blobVersion = 1

const (
	dataKeyLen = 32
	nonceLen   = 12
	tagLen     = 16
	// contextKey is the encryption-context key naming the job.
	contextKey = "job_id"
)

// Keeper seals and opens per-job secrets with envelope encryption: every
// Seal asks the KeyWrapper for a fresh data key bound to the job id, and
// encrypts with it under AES-256-GCM. It is safe for concurrent use if the
// wrapper is.
type Keeper struct {
	w KeyWrapper
}

// NewKeeper returns a Keeper over w.
func NewKeeper(w KeyWrapper) *Keeper { return &Keeper{w: w} }

func jobContext(jobID string) map[string]string { return map[string]string{contextKey: jobID} }

func aad(jobID string) []byte {
	return append([]byte{blobVersion}, "seren-replicator/credentials/job:"+jobID...)
}

// Seal encrypts plaintext for the job jobID.
func (k *Keeper) Seal(ctx context.Context, jobID string, plaintext []byte) ([]byte, error) {
	if jobID == "" {
		return nil, errors.New("seal: empty job id")
	}
	key, wrapped, err := k.w.NewDataKey(ctx, jobContext(jobID))
	if err != nil {
		return nil, fmt.Errorf("seal job %s: new data key: %w", jobID, err)
	}
	defer clear(key)
	if len(key) != dataKeyLen {
		return nil, fmt.Errorf("seal job %s: data key is %d bytes, want %d", jobID, len(key), dataKeyLen)
	}
	if len(wrapped) == 0 || len(wrapped) > 0xffff {
		return nil, fmt.Errorf("seal job %s: wrapped data key is %d bytes", jobID, len(wrapped))
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("seal job %s: %w", jobID, err)
	}
	out := make([]byte, 0, 3+len(wrapped)+nonceLen+len(plaintext)+tagLen)
	out = append(out, blobVersion)
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal job %s: nonce: %w", jobID, err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, aad(jobID)), nil
}

// Open decrypts a blob Seal produced for the same jobID.
func (k *Keeper) Open(ctx context.Context, jobID string, sealed []byte) ([]byte, error) {
	if jobID == "" {
		return nil, errors.New("open: empty job id")
	}
	if len(sealed) < 3 || sealed[0] != blobVersion {
		return nil, fmt.Errorf("open credentials of job %s: %w", jobID, ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(sealed[1:3]))
	if n == 0 || len(sealed) < 3+n+nonceLen+tagLen {
		return nil, fmt.Errorf("open credentials of job %s: %w", jobID, ErrMalformed)
	}
	wrapped := sealed[3 : 3+n]
	nonce := sealed[3+n : 3+n+nonceLen]
	ct := sealed[3+n+nonceLen:]
	key, err := k.w.Unwrap(ctx, wrapped, jobContext(jobID))
	if err != nil {
		return nil, fmt.Errorf("open credentials of job %s: unwrap data key: %w", jobID, err)
	}
	defer clear(key)
	if len(key) != dataKeyLen {
		return nil, fmt.Errorf("open credentials of job %s: data key is %d bytes: %w", jobID, len(key), ErrDecrypt)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("open credentials of job %s: %w", jobID, err)
	}
	pt, err := aead.Open(nil, nonce, ct, aad(jobID))
	if err != nil {
		return nil, fmt.Errorf("open credentials of job %s: %w", jobID, ErrDecrypt)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// SealCredentials seals a job's source and target URLs.
func (k *Keeper) SealCredentials(ctx context.Context, jobID string, c jobs.Credentials) ([]byte, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("seal job %s: encode credentials: %w", jobID, err)
	}
	defer clear(raw)
	return k.Seal(ctx, jobID, raw)
}

// OpenCredentials opens what SealCredentials sealed.
func (k *Keeper) OpenCredentials(ctx context.Context, jobID string, sealed []byte) (jobs.Credentials, error) {
	raw, err := k.Open(ctx, jobID, sealed)
	if err != nil {
		return jobs.Credentials{}, err
	}
	defer clear(raw)
	var c jobs.Credentials
	if err := json.Unmarshal(raw, &c); err != nil {
		// The JSON error could quote the plaintext; do not wrap it.
		return jobs.Credentials{}, fmt.Errorf("open credentials of job %s: decoded blob is not credentials: %w", jobID, ErrMalformed)
	}
	return c, nil
}

// Close closes the wrapper.
func (k *Keeper) Close() error { return k.w.Close() }

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return cipher.NewGCM(block)
}
