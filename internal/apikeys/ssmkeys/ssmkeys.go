// Package ssmkeys is the AWS apikeys.Verifier: API keys live in SSM
// Parameter Store as SecureString parameters, the main one at Param (e.g.
// /seren-replication/api-key, what Terraform writes) and any number of
// extra ones under Param+"s/" (e.g. /seren-replication/api-keys/alice), so
// a new key can be added before the old one is removed.
//
// The keys are read with decryption and cached for a short time (TTL,
// default 60 s), so a rotation takes effect without a redeploy; an unknown
// key also triggers an early re-read (at most every MinRefresh) so a newly
// added key works at once. Only SHA-256 hashes of the keys are kept in
// memory, and a presented key is compared in constant time against all of
// them. The owner id of a key is derived from its hash, never the secret.
package ssmkeys

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// API is the part of the SSM client the verifier uses (*ssm.Client).
type API interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	ssm.GetParametersByPathAPIClient
}

// Defaults.
const (
	DefaultTTL        = 60 * time.Second
	DefaultMinRefresh = 5 * time.Second
)

// Options configure a Verifier.
type Options struct {
	// Param is the main key's parameter name (SEREN_API_KEY_PARAM); keys
	// under Param+"s/" are read too.
	Param string
	// TTL is how long keys are cached (default 60 s).
	TTL time.Duration
	// MinRefresh is the least time between two reads caused by an unknown
	// key (default 5 s), so bad keys cannot hammer SSM.
	MinRefresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verifier checks API keys against SSM Parameter Store.
type Verifier struct {
	api  API
	opts Options

	mu      sync.Mutex
	hashes  [][sha256.Size]byte
	fetched time.Time
	loaded  bool
}

var _ apikeys.Verifier = (*Verifier)(nil)

// New returns a verifier reading opts.Param.
func New(api API, opts Options) (*Verifier, error) {
	if api == nil {
		return nil, errors.New("ssmkeys: nil SSM client")
	}
	opts.Param = strings.TrimRight(opts.Param, "/")
	if opts.Param == "" || !strings.HasPrefix(opts.Param, "/") {
		return nil, hint.Wrap(fmt.Errorf("ssmkeys: API key parameter %q is not an absolute parameter name", opts.Param),
			"set SEREN_API_KEY_PARAM to the SSM parameter holding the API key, e.g. /seren-replication/api-key")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = DefaultMinRefresh
	}
	if opts.MinRefresh > opts.TTL {
		opts.MinRefresh = opts.TTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{api: api, opts: opts}, nil
}

// NewFromConfig builds the SSM client from cfg (config.LoadDefaultConfig,
// so AWS_ENDPOINT_URL_SSM is honoured).
func NewFromConfig(cfg aws.Config, opts Options) (*Verifier, error) {
	return New(ssm.NewFromConfig(cfg), opts)
}

// OwnerID is the stable, non-secret id of a key: a domain-separated
// SHA-256 of it, truncated to 128 bits. Jobs record it as their owner.
func OwnerID(secret string) string {
	h := ownerHash(sha256.Sum256([]byte(secret)))
	return "key_" + hex.EncodeToString(h[:16])
}

func ownerHash(keyHash [sha256.Size]byte) [sha256.Size]byte {
	return sha256.Sum256(append([]byte("seren-replication api key owner\x00"), keyHash[:]...))
}

// Verify returns the owner id of secret, or apikeys.ErrInvalid. Any other
// error means the keys could not be read (the caller answers 5xx).
func (v *Verifier) Verify(ctx context.Context, secret string) (string, error) {
	if secret == "" {
		return "", apikeys.ErrInvalid
	}
	h := sha256.Sum256([]byte(secret))

	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.opts.Now()
	if !v.loaded || now.Sub(v.fetched) >= v.opts.TTL {
		if err := v.refresh(ctx, now); err != nil {
			return "", err
		}
	}
	if match(v.hashes, h) {
		return OwnerID(secret), nil
	}
	// Unknown key: maybe it was just added. Re-read, but not too often.
	if now.Sub(v.fetched) >= v.opts.MinRefresh {
		if err := v.refresh(ctx, now); err != nil {
			return "", err
		}
		if match(v.hashes, h) {
			return OwnerID(secret), nil
		}
	}
	return "", apikeys.ErrInvalid
}

// match compares h against every hash in constant time per hash and
// without stopping at the first match.
func match(hashes [][sha256.Size]byte, h [sha256.Size]byte) bool {
	found := 0
	for i := range hashes {
		found |= subtle.ConstantTimeCompare(hashes[i][:], h[:])
	}
	return found == 1
}

// refresh re-reads every key; on failure the old cache is dropped (fail
// closed: a revoked key must not keep working while SSM is unreachable).
func (v *Verifier) refresh(ctx context.Context, now time.Time) error {
	hashes, err := v.load(ctx)
	if err != nil {
		v.hashes, v.loaded = nil, false
		return err
	}
	v.hashes, v.fetched, v.loaded = hashes, now, true
	return nil
}

func (v *Verifier) load(ctx context.Context) ([][sha256.Size]byte, error) {
	var values []string
	out, err := v.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(v.opts.Param), WithDecryption: aws.Bool(true)})
	var nf *types.ParameterNotFound
	switch {
	case errors.As(err, &nf):
	case err != nil:
		return nil, readErr(fmt.Errorf("read API key parameter %s: %w", v.opts.Param, err), v.opts.Param)
	case out.Parameter != nil:
		values = append(values, aws.ToString(out.Parameter.Value))
	}

	path := v.opts.Param + "s/"
	p := ssm.NewGetParametersByPathPaginator(v.api, &ssm.GetParametersByPathInput{
		Path: aws.String(path), Recursive: aws.Bool(true), WithDecryption: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, readErr(fmt.Errorf("read API key parameters under %s: %w", path, err), v.opts.Param)
		}
		for _, prm := range page.Parameters {
			values = append(values, aws.ToString(prm.Value))
		}
	}

	var hashes [][sha256.Size]byte
	for _, val := range values {
		if val = strings.TrimSpace(val); val != "" {
			hashes = append(hashes, sha256.Sum256([]byte(val)))
		}
	}
	if len(hashes) == 0 {
		return nil, hint.Wrap(fmt.Errorf("no API key found in SSM parameter %s or under %s", v.opts.Param, path),
			fmt.Sprintf("create it: aws ssm put-parameter --type SecureString --name %s --value \"$(openssl rand -base64 32)\"", v.opts.Param))
	}
	return hashes, nil
}

func readErr(err error, param string) error {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) && strings.Contains(ae.ErrorCode(), "AccessDenied") {
		return hint.Wrap(err, fmt.Sprintf("grant ssm:GetParameter and ssm:GetParametersByPath on %s* (and kms:Decrypt for SecureString) to the API role", param))
	}
	return err
}
