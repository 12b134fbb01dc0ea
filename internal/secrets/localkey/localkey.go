// Package localkey is the embedded secrets.KeyWrapper: data keys are
// wrapped with AES-256-GCM under a master key kept in a local file (32
// random bytes, base64, created on first use with 0600 permissions under
// the service's data directory). The encryption context is bound as GCM
// additional data, so a wrapped key opens only for the job it was made for.
package localkey

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
)

// FileName is the key file's name inside the service's data directory.
const FileName = "master.key"

const (
	keyLen     = 32
	keyIDLen   = 8
	nonceLen   = 12
	tagLen     = 16
	wrapFormat = 1
)

// Wrapper implements secrets.KeyWrapper with a master key held in memory.
type Wrapper struct {
	mu    sync.RWMutex
	aead  cipher.AEAD // nil once closed
	keyID []byte
	path  string
}

var _ secrets.KeyWrapper = (*Wrapper)(nil)

// Open loads the master key from path, creating the file (and its
// directory, 0700) with a new random key and 0600 permissions if it does
// not exist. A key file that others can read is refused.
func Open(path string) (*Wrapper, error) {
	key, err := load(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = create(path)
	}
	if err != nil {
		return nil, err
	}
	defer clear(key)
	w, err := New(key)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	w.path = path
	return w, nil
}

// New returns a wrapper over a 32-byte master key (copied).
func New(key []byte) (*Wrapper, error) {
	if len(key) != keyLen {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(key), keyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("seren-replicator/localkey-id:"), key...))
	return &Wrapper{aead: aead, keyID: sum[:keyIDLen]}, nil
}

// KeyID is a short public fingerprint of the master key (not secret).
func (w *Wrapper) KeyID() string { return hex.EncodeToString(w.keyID) }

func load(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read master key %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read master key %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("master key %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, hint.Wrap(fmt.Errorf("master key %s is readable by other users (mode %04o)", path, st.Mode().Perm()),
			fmt.Sprintf("chmod 600 %s", path))
	}
	raw := make([]byte, 256)
	n, err := f.Read(raw)
	defer clear(raw)
	if err != nil {
		return nil, fmt.Errorf("read master key %s: %w", path, err)
	}
	return decodeKey(path, raw[:n])
}

// decodeKey accepts the key as 32 raw bytes or as base64 (standard or URL
// alphabet, padding optional) with surrounding white space.
func decodeKey(path string, raw []byte) ([]byte, error) {
	if len(raw) == keyLen {
		return bytes.Clone(raw), nil
	}
	text := bytes.TrimSpace(raw)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key := make([]byte, enc.DecodedLen(len(text)))
		n, err := enc.Decode(key, text)
		if err == nil && n == keyLen {
			return key[:n], nil
		}
		clear(key)
	}
	return nil, hint.Wrap(fmt.Errorf("master key %s does not hold a 32-byte key (raw or base64)", path),
		"restore the key file from your backup; without it, stored credentials cannot be decrypted (new jobs only need a new file: move the old one away)")
}

// create writes a new key to path without ever exposing a partial file:
// temp file (0600) in the same directory, then a hard link that fails if
// another process created the key first, in which case that key is used.
func create(path string) ([]byte, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, hint.Wrap(fmt.Errorf("create master key %s: %w", path, err), "choose a --data-dir you can write to")
	}
	key := make([]byte, keyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".master.key-*")
	if err != nil {
		return nil, hint.Wrap(fmt.Errorf("create master key %s: %w", path, err), "choose a --data-dir you can write to")
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create master key %s: %w", path, err)
	}
	text := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	_, werr := tmp.Write(text)
	clear(text)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("create master key %s: %w", path, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			clear(key)
			return load(path)
		}
		return nil, fmt.Errorf("create master key %s: %w", path, err)
	}
	return key, nil
}

// additional data: format, key id and the canonical (sorted-key JSON)
// encryption context.
func (w *Wrapper) additional(c map[string]string) ([]byte, error) {
	if c == nil {
		c = map[string]string{}
	}
	ctxJSON, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	ad := append([]byte{wrapFormat}, w.keyID...)
	return append(ad, ctxJSON...), nil
}

// NewDataKey returns a fresh data key and its wrapped form:
// format(1) | master key id(8) | nonce(12) | GCM(data key)(48).
func (w *Wrapper) NewDataKey(ctx context.Context, c map[string]string) (plain, wrapped []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.aead == nil {
		return nil, nil, errors.New("localkey: wrapper is closed")
	}
	ad, err := w.additional(c)
	if err != nil {
		return nil, nil, err
	}
	plain = make([]byte, keyLen)
	if _, err := rand.Read(plain); err != nil {
		return nil, nil, fmt.Errorf("new data key: %w", err)
	}
	out := make([]byte, 0, 1+keyIDLen+nonceLen+keyLen+tagLen)
	out = append(out, wrapFormat)
	out = append(out, w.keyID...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("new data key: %w", err)
	}
	out = append(out, nonce...)
	return plain, w.aead.Seal(out, nonce, plain, ad), nil
}

// Unwrap returns the data key wrapped for context c.
func (w *Wrapper) Unwrap(ctx context.Context, wrapped []byte, c map[string]string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.aead == nil {
		return nil, errors.New("localkey: wrapper is closed")
	}
	if len(wrapped) != 1+keyIDLen+nonceLen+keyLen+tagLen || wrapped[0] != wrapFormat {
		return nil, fmt.Errorf("wrapped data key is malformed: %w", secrets.ErrDecrypt)
	}
	if !bytes.Equal(wrapped[1:1+keyIDLen], w.keyID) {
		return nil, hint.Wrap(fmt.Errorf("data key was wrapped by another master key (id %x, this one is %x): %w",
			wrapped[1:1+keyIDLen], w.keyID, secrets.ErrDecrypt),
			"start the service with the --data-dir (and its "+FileName+") that submitted the job")
	}
	ad, err := w.additional(c)
	if err != nil {
		return nil, err
	}
	nonce := wrapped[1+keyIDLen : 1+keyIDLen+nonceLen]
	plain, err := w.aead.Open(nil, nonce, wrapped[1+keyIDLen+nonceLen:], ad)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", secrets.ErrDecrypt)
	}
	return plain, nil
}

// Close forgets the master key.
func (w *Wrapper) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.aead = nil
	return nil
}
