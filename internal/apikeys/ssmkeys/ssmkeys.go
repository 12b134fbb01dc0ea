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
// them.
//
// A parameter's value is either the key alone (the original format) or a
// JSON object naming the key's principal and operator flag:
//
//	{"key": "SECRET", "principal": "alice", "operator": false}
//
// Jobs belong to the principal, so a new key with the same principal sees
// the old key's jobs. A key stored alone is its own principal: its owner
// id (derived from its hash, never the secret), which is what jobs were
// recorded under before principals existed, so existing jobs stay visible.
// To rotate such a key keeping its jobs, store the new one as JSON with
// "principal" set to the old key's owner id (keys list shows it).
package ssmkeys

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
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
	keys    []key
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

// key is one cached key: its hash and who holds it.
type key struct {
	hash      [sha256.Size]byte
	principal string
	operator  bool
}

// storedKey is the JSON form of a parameter value.
type storedKey struct {
	Key       string `json:"key"`
	Principal string `json:"principal"`
	Operator  bool   `json:"operator"`
}

// parseValue reads one parameter value; ok is false for a value that holds
// no usable key (it is ignored: fail closed).
func parseValue(val string) (key, bool) {
	val = strings.TrimSpace(val)
	if val == "" {
		return key{}, false
	}
	if !strings.HasPrefix(val, "{") {
		h := sha256.Sum256([]byte(val))
		return key{hash: h, principal: OwnerID(val)}, true
	}
	var sk storedKey
	if err := json.Unmarshal([]byte(val), &sk); err != nil || strings.TrimSpace(sk.Key) == "" {
		return key{}, false
	}
	sk.Key = strings.TrimSpace(sk.Key)
	k := key{hash: sha256.Sum256([]byte(sk.Key)), principal: strings.TrimSpace(sk.Principal), operator: sk.Operator}
	if k.principal == "" {
		k.principal = OwnerID(sk.Key)
	}
	return k, true
}

// Verify returns who holds secret, or apikeys.ErrInvalid. Any other error
// means the keys could not be read (the caller answers 5xx).
func (v *Verifier) Verify(ctx context.Context, secret string) (apikeys.Identity, error) {
	if secret == "" {
		return apikeys.Identity{}, apikeys.ErrInvalid
	}
	h := sha256.Sum256([]byte(secret))

	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.opts.Now()
	if !v.loaded || now.Sub(v.fetched) >= v.opts.TTL {
		if err := v.refresh(ctx, now); err != nil {
			return apikeys.Identity{}, err
		}
	}
	if k, ok := match(v.keys, h); ok {
		return identity(secret, k), nil
	}
	// Unknown key: maybe it was just added. Re-read, but not too often.
	if now.Sub(v.fetched) >= v.opts.MinRefresh {
		if err := v.refresh(ctx, now); err != nil {
			return apikeys.Identity{}, err
		}
		if k, ok := match(v.keys, h); ok {
			return identity(secret, k), nil
		}
	}
	return apikeys.Identity{}, apikeys.ErrInvalid
}

func identity(secret string, k key) apikeys.Identity {
	return apikeys.Identity{KeyID: OwnerID(secret), Principal: k.principal, Operator: k.operator}
}

// match compares h against every hash in constant time per hash and
// without stopping at the first match.
func match(keys []key, h [sha256.Size]byte) (key, bool) {
	found, at := 0, 0
	for i := range keys {
		eq := subtle.ConstantTimeCompare(keys[i].hash[:], h[:])
		at = subtle.ConstantTimeSelect(eq, i, at)
		found |= eq
	}
	if found != 1 {
		return key{}, false
	}
	return keys[at], true
}

// refresh re-reads every key; on failure the old cache is dropped (fail
// closed: a revoked key must not keep working while SSM is unreachable).
func (v *Verifier) refresh(ctx context.Context, now time.Time) error {
	keys, err := v.load(ctx)
	if err != nil {
		v.keys, v.loaded = nil, false
		return err
	}
	v.keys, v.fetched, v.loaded = keys, now, true
	return nil
}

func (v *Verifier) load(ctx context.Context) ([]key, error) {
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

	var keys []key
	for _, val := range values {
		if k, ok := parseValue(val); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, hint.Wrap(fmt.Errorf("no API key found in SSM parameter %s or under %s", v.opts.Param, path),
			fmt.Sprintf("create it: aws ssm put-parameter --type SecureString --name %s --value \"$(openssl rand -base64 32)\"", v.opts.Param))
	}
	return keys, nil
}

func readErr(err error, param string) error {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) && strings.Contains(ae.ErrorCode(), "AccessDenied") {
		return hint.Wrap(err, fmt.Sprintf("grant ssm:GetParameter and ssm:GetParametersByPath on %s* (and kms:Decrypt for SecureString) to the API role", param))
	}
	return err
}
