package kmskeys_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/kmskeys"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/secretstest"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

func newWrapper(t *testing.T) (*kmskeys.Wrapper, *kms.Client) {
	t.Helper()
	cfg := awstest.Config(t, awstest.KMS)
	client := kms.NewFromConfig(cfg)
	w, err := kmskeys.New(client, awstest.KMSKeyID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, client
}

func TestDataKeyRoundTrip(t *testing.T) {
	w, _ := newWrapper(t)
	ctx := context.Background()
	ec := map[string]string{"job_id": "job-1"}

	plain, wrapped, err := w.NewDataKey(ctx, ec)
	if err != nil {
		t.Fatalf("NewDataKey: %v", err)
	}
	if len(plain) != 32 {
		t.Fatalf("data key is %d bytes, want 32", len(plain))
	}
	if bytes.Contains(wrapped, plain) {
		t.Fatal("wrapped key contains the plaintext key")
	}
	got, err := w.Unwrap(ctx, wrapped, ec)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatal("Unwrap returned a different key")
	}

	plain2, wrapped2, err := w.NewDataKey(ctx, ec)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(plain, plain2) || bytes.Equal(wrapped, wrapped2) {
		t.Fatal("two data keys are equal; every job must get a fresh key")
	}
}

func TestUnwrapRefusesOtherJob(t *testing.T) {
	w, _ := newWrapper(t)
	ctx := context.Background()
	_, wrapped, err := w.NewDataKey(ctx, map[string]string{"job_id": "job-a"})
	if err != nil {
		t.Fatal(err)
	}
	for name, ec := range map[string]map[string]string{
		"other job":  {"job_id": "job-b"},
		"no context": nil,
		"extra key":  {"job_id": "job-a", "x": "y"},
	} {
		if _, err := w.Unwrap(ctx, wrapped, ec); !errors.Is(err, secrets.ErrDecrypt) {
			t.Errorf("%s: Unwrap = %v; want ErrDecrypt: a wrapped key opens only for its own job", name, err)
		}
	}
	// Every single byte of the wrapped key matters (local-kms itself
	// ignores some bytes of its blob; the wrapper's tag does not).
	for i := range wrapped {
		tampered := append([]byte(nil), wrapped...)
		tampered[i] ^= 0x01
		if _, err := w.Unwrap(ctx, tampered, map[string]string{"job_id": "job-a"}); !errors.Is(err, secrets.ErrDecrypt) {
			t.Fatalf("Unwrap with byte %d of %d flipped: %v; want ErrDecrypt", i, len(wrapped), err)
		}
	}
}

func TestUnwrapRefusesOtherKey(t *testing.T) {
	w, client := newWrapper(t)
	ctx := context.Background()
	other, err := client.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	w2, err := kmskeys.New(client, *other.KeyMetadata.KeyId)
	if err != nil {
		t.Fatal(err)
	}
	ec := map[string]string{"job_id": "job-k"}
	_, wrapped, err := w2.NewDataKey(ctx, ec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Unwrap(ctx, wrapped, ec); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("Unwrap of a data key wrapped under another KMS key = %v; want ErrDecrypt", err)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, client := newWrapper(t)
	w, err := kmskeys.New(client, "alias/"+awstest.Name(t, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.NewDataKey(context.Background(), map[string]string{"job_id": "j"}); err == nil {
		t.Fatal("NewDataKey with a missing key succeeded")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := kmskeys.New(nil, "k"); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := kmskeys.New(&kms.Client{}, ""); err == nil {
		t.Error("empty key id accepted")
	}
}

func TestConformance(t *testing.T) {
	secretstest.Run(t, func(t *testing.T) secrets.KeyWrapper {
		w, _ := newWrapper(t)
		return w
	})
}
