package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// fingerprintVersion prefixes a stored request fingerprint:
// "v1.<salt>.<mac>", both base64url without padding.
const fingerprintVersion = "v1"

const fingerprintSaltLen = 16

// fingerprint returns the request fingerprint stored with a job submitted
// under an Idempotency-Key: HMAC-SHA256 under Config.RequestKey of a fresh
// salt and the canonical request, URLs included. A retry is the same
// request exactly when sameRequest recomputes the same MAC; the URLs
// themselves are never stored in clear.
func (h *handler) fingerprint(req jobs.Request) (string, error) {
	salt := make([]byte, fingerprintSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("request fingerprint salt: %w", err)
	}
	mac, err := h.requestMAC(salt, req)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return fingerprintVersion + "." + enc.EncodeToString(salt) + "." + enc.EncodeToString(mac), nil
}

// sameRequest reports whether req is the request whose fingerprint is fp.
// A job stored without a fingerprint (before fingerprints existed) is
// compared by its spec alone, as it was then.
func (h *handler) sameRequest(existing *jobs.Job, req jobs.Request) bool {
	if existing.RequestFingerprint == "" {
		return specEqual(existing.Spec, req.Spec())
	}
	parts := strings.Split(existing.RequestFingerprint, ".")
	if len(parts) != 3 || parts[0] != fingerprintVersion {
		return false
	}
	enc := base64.RawURLEncoding
	salt, err1 := enc.DecodeString(parts[1])
	want, err2 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return false
	}
	got, err := h.requestMAC(salt, req)
	return err == nil && hmac.Equal(got, want)
}

func (h *handler) requestMAC(salt []byte, req jobs.Request) ([]byte, error) {
	// encoding/json writes struct fields in declaration order and map keys
	// sorted: the same request always encodes to the same bytes.
	canonical, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request for its fingerprint: %w", err)
	}
	m := hmac.New(sha256.New, h.cfg.RequestKey)
	m.Write(salt)
	m.Write(canonical)
	return m.Sum(nil), nil
}

func specEqual(a, b jobs.Spec) bool { return reflect.DeepEqual(a, b) }
