// Package kmskeys is the AWS KeyWrapper of package secrets: data keys come
// from KMS GenerateDataKey (AES_256) under one customer master key and are
// unwrapped with KMS Decrypt. The secrets context map (the job id) is the
// KMS encryption context, so a wrapped key only opens for the job it was
// made for, and every use is visible in CloudTrail with that job id.
package kmskeys

import (
	"context"
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
	return out.Plaintext, out.CiphertextBlob, nil
}

// Unwrap decrypts a wrapped data key. The key id is passed too, so a blob
// made under another key is refused rather than silently accepted.
func (w *Wrapper) Unwrap(ctx context.Context, wrapped []byte, ec map[string]string) ([]byte, error) {
	if len(wrapped) == 0 {
		return nil, errors.New("kms Decrypt: empty wrapped data key")
	}
	out, err := w.api.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(w.keyID),
		CiphertextBlob:    wrapped,
		EncryptionContext: ec,
	})
	if err != nil {
		return nil, classify(fmt.Errorf("kms Decrypt with key %s: %w", w.keyID, err), w.keyID, "kms:Decrypt")
	}
	if len(out.Plaintext) != 32 {
		return nil, fmt.Errorf("kms Decrypt with key %s: got a %d-byte data key, want 32", w.keyID, len(out.Plaintext))
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
		state    *types.KMSInvalidStateException
	)
	switch {
	case errors.As(err, &invalid):
		return fmt.Errorf("%w (the wrapped key does not belong to this job or key)", err)
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
	var ad interface{ ErrorCode() string }
	if errors.As(err, &ad) {
		switch ad.ErrorCode() {
		case "AccessDeniedException", "AccessDenied":
			return true
		}
	}
	return false
}
