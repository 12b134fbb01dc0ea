// Package kmskeys is the AWS KeyWrapper of package secrets: data keys come
// from KMS GenerateDataKey (AES_256) under one customer master key and are
// unwrapped with KMS Decrypt. The secrets context map (the job id) is the
// KMS encryption context, so a wrapped key only opens for the job it was
// made for, and every use is visible in CloudTrail with that job id.
//
// The wrapped form is a version byte, the KMS ciphertext blob, and an
// HMAC-SHA256 of both under a key derived from the data key. KMS already
// authenticates its blob; the tag binds the stored bytes exactly, whatever
// parts of the blob a KMS implementation ignores (local-kms ignores the
// embedded key id when KeyId is passed), so any change to a wrapped key
// fails with secrets.ErrDecrypt.
package kmskeys

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
)

// API is the part of the KMS client the wrapper uses (*kms.Client).
type API interface {
	GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// Wrapper wraps data keys with one KMS key.
type Wrapper struct {
	api   API
	keyID string
}

var _ secrets.KeyWrapper = (*Wrapper)(nil)

// New returns a wrapper using keyID (key id, ARN, alias name or alias ARN).
func New(api API, keyID string) (*Wrapper, error) {
	if api == nil {
		return nil, errors.New("kmskeys: nil KMS client")
	}
	if keyID == "" {
		return nil, hint.Wrap(errors.New("kmskeys: no KMS key id"),
			"set the KMS key (id, ARN or alias such as alias/seren-replication-credentials) in the service configuration")
	}
	return &Wrapper{api: api, keyID: keyID}, nil
}

// NewFromConfig builds the KMS client from cfg (config.LoadDefaultConfig,
// so AWS_ENDPOINT_URL_KMS is honoured).
func NewFromConfig(cfg aws.Config, keyID string) (*Wrapper, error) {
	return New(kms.NewFromConfig(cfg), keyID)
}

// NewDataKey asks KMS for a fresh AES-256 data key bound to ec.
func (w *Wrapper) NewDataKey(ctx context.Context, ec map[string]string) (plain, wrapped []byte, err error) {
	out, err := w.api.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(w.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, nil, classify(fmt.Errorf("kms GenerateDataKey with key %s: %w", w.keyID, err), w.keyID, "kms:GenerateDataKey")
	}
	if len(out.Plaintext) != 32 || len(out.CiphertextBlob) == 0 {
		return nil, nil, fmt.Errorf("kms GenerateDataKey with key %s: got a %d-byte data key, want 32", w.keyID, len(out.Plaintext))
	}
	tag, err := mac(out.Plaintext, out.CiphertextBlob)
	if err != nil {
		return nil, nil, err
	}
	wrapped = make([]byte, 0, 1+len(out.CiphertextBlob)+len(tag))
	wrapped = append(append(append(wrapped, formatV1), out.CiphertextBlob...), tag...)
	return out.Plaintext, wrapped, nil
}

// formatV1 is the first byte of a wrapped key: v1 = blob || tag.
const formatV1 = 0x01

// mac is the tag over a wrapped key's version and KMS blob.
func mac(dataKey, blob []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, dataKey, nil, "seren-replication kmskeys v1 wrapped-key mac", 32)
	if err != nil {
		return nil, fmt.Errorf("derive wrapped-key mac key: %w", err)
	}
	h := hmac.New(sha256.New, k)
	h.Write([]byte{formatV1})
	h.Write(blob)
	return h.Sum(nil), nil
}

// Unwrap decrypts a wrapped data key. The key id is passed too, so a blob
// made under another key is refused rather than silently accepted.
func (w *Wrapper) Unwrap(ctx context.Context, wrapped []byte, ec map[string]string) ([]byte, error) {
	if len(wrapped) < 1+1+sha256.Size || wrapped[0] != formatV1 {
		return nil, fmt.Errorf("kms unwrap: not a wrapped data key (%d bytes): %w", len(wrapped), secrets.ErrDecrypt)
	}
	blob, tag := wrapped[1:len(wrapped)-sha256.Size], wrapped[len(wrapped)-sha256.Size:]
	out, err := w.api.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(w.keyID),
		CiphertextBlob:    blob,
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, classify(fmt.Errorf("kms Decrypt with key %s: %w", w.keyID, err), w.keyID, "kms:Decrypt")
	}
	if len(out.Plaintext) != 32 {
		return nil, fmt.Errorf("kms Decrypt with key %s: got a %d-byte data key: %w", w.keyID, len(out.Plaintext), secrets.ErrDecrypt)
	}
	want, err := mac(out.Plaintext, blob)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(tag, want) {
		clear(out.Plaintext)
		return nil, fmt.Errorf("kms unwrap with key %s: wrapped key was altered: %w", w.keyID, secrets.ErrDecrypt)
	}
	return out.Plaintext, nil
}

// Close releases nothing: the KMS client holds no resources.
func (w *Wrapper) Close() error { return nil }

// classify attaches the operator's fix where the failure says what it is.
func classify(err error, keyID, action string) error {
	var (
		notFound *types.NotFoundException
		disabled *types.DisabledException
		invalid  *types.InvalidCiphertextException
		wrongKey *types.IncorrectKeyException
		state    *types.KMSInvalidStateException
	)
	switch {
	case errors.As(err, &invalid), errors.As(err, &wrongKey), action == "kms:Decrypt" && ErrorCode(err) == "ValidationException":
		// The wrapped key does not belong to this job or this KMS key.
		return fmt.Errorf("%w: %w", secrets.ErrDecrypt, err)
	case errors.As(err, &notFound):
		return hint.Wrap(err, fmt.Sprintf("check that KMS key %s exists in this region", keyID))
	case errors.As(err, &disabled), errors.As(err, &state):
		return hint.Wrap(err, fmt.Sprintf("enable KMS key %s (or cancel its pending deletion)", keyID))
	case isAccessDenied(err):
		return hint.Wrap(err, fmt.Sprintf("grant %s on KMS key %s to this role (see deploy/aws IAM policies)", action, keyID))
	}
	return err
}

func isAccessDenied(err error) bool {
	switch ErrorCode(err) {
	case "AccessDeniedException", "AccessDenied":
		return true
	}
	return false
}

// ErrorCode returns the AWS error code inside err ("" if none).
func ErrorCode(err error) string {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
