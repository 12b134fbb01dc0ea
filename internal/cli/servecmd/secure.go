package servecmd

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"io/fs"
	"os"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// RequestKeyFile is the file under the data directory that holds the key
// of the request fingerprints kept with idempotent submits (api.Config.
// RequestKey): 32 random bytes, base64, created on first start with 0600
// permissions.
const RequestKeyFile = "request.key"

// loadTLS returns the server's TLS configuration for --tls-cert/--tls-key,
// or nil when neither is given.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, clio.Usage(errors.New("--tls-cert and --tls-key go together"))
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		// The error names the files (the operator's own) but never holds
		// the key's contents.
		return nil, hint.Wrap(fmt.Errorf("load --tls-cert/--tls-key: %w", err),
			"pass a PEM certificate (chain) and its PEM private key")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// loadRequestKey reads the request fingerprint key at path, creating it if
// it does not exist. A key file that others can read is refused.
func loadRequestKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("create request key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return loadRequestKey(path) // another serve created it first
		}
		if err != nil {
			return nil, fmt.Errorf("create request key file %s: %w", path, err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("write request key file %s: %w", path, werr)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read request key file %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, hint.Wrap(fmt.Errorf("request key file %s is readable by others (%v)", path, st.Mode().Perm()),
			"chmod 600 "+path)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("request key file %s: not a base64 key of at least 16 bytes", path)
	}
	return key, nil
}
