// Package secretstest is the conformance suite every secrets.KeyWrapper
// passes, directly and through the portable secrets.Keeper:
//
//	func TestConformance(t *testing.T) {
//		secretstest.Run(t, func(t *testing.T) secrets.KeyWrapper { return newTestWrapper(t) })
//	}
//
// The suite closes the wrappers newWrapper returns. Two wrappers returned
// by newWrapper in one test must share their master key (as two processes
// pointed at one key file or one KMS key would).
package secretstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
)

// Run runs the conformance suite.
func Run(t *testing.T, newWrapper func(t *testing.T) secrets.KeyWrapper) {
	t.Helper()
	setup := func(t *testing.T) secrets.KeyWrapper {
		t.Helper()
		w := newWrapper(t)
		t.Cleanup(func() {
			if err := w.Close(); err != nil {
				t.Errorf("close wrapper: %v", err)
			}
		})
		return w
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, w secrets.KeyWrapper, again func(t *testing.T) secrets.KeyWrapper)
	}{
		{"DataKeyRoundTrip", testDataKey},
		{"DataKeysAreFresh", testDataKeysFresh},
		{"UnwrapWrongContext", testUnwrapWrongContext},
		{"UnwrapGarbage", testUnwrapGarbage},
		{"SealOpenRoundTrip", testRoundTrip},
		{"OpenWithAnotherInstance", testAnotherInstance},
		{"OpenWrongJob", testWrongJob},
		{"Tampering", testTampering},
		{"DistinctBlobs", testDistinct},
		{"Credentials", testCredentials},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, setup(t), setup)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func jobCtx(id string) map[string]string { return map[string]string{"job_id": id} }

func testDataKey(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	plain, wrapped, err := w.NewDataKey(ctx, jobCtx("job-1"))
	if err != nil {
		t.Fatalf("NewDataKey: %v", err)
	}
	if len(plain) != 32 {
		t.Fatalf("data key is %d bytes, want 32", len(plain))
	}
	if len(wrapped) == 0 || len(wrapped) > 0xffff {
		t.Fatalf("wrapped key is %d bytes", len(wrapped))
	}
	if bytes.Contains(wrapped, plain) {
		t.Fatalf("wrapped key contains the plain key")
	}
	want := bytes.Clone(plain)
	got, err := w.Unwrap(ctx, wrapped, jobCtx("job-1"))
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unwrap returned a different key")
	}
}

func testDataKeysFresh(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	p1, w1, err := w.NewDataKey(ctx, jobCtx("job-1"))
	if err != nil {
		t.Fatal(err)
	}
	p2, w2, err := w.NewDataKey(ctx, jobCtx("job-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(p1, p2) || bytes.Equal(w1, w2) {
		t.Errorf("two data keys for one context are equal")
	}
}

func testUnwrapWrongContext(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	_, wrapped, err := w.NewDataKey(ctx, jobCtx("job-1"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]map[string]string{
		"other job":   jobCtx("job-2"),
		"prefix job":  jobCtx("job-"),
		"extra key":   {"job_id": "job-1", "x": "y"},
		"other key":   {"job": "job-1"},
		"no context":  nil,
		"empty value": jobCtx(""),
	} {
		if got, err := w.Unwrap(ctx, wrapped, c); !errors.Is(err, secrets.ErrDecrypt) {
			t.Errorf("Unwrap with %s: key %v, err %v; want ErrDecrypt", name, got != nil, err)
		}
	}
}

func testUnwrapGarbage(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	junk := make([]byte, 184)
	if _, err := rand.Read(junk); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"empty": nil, "one byte": {1}, "random": junk} {
		if got, err := w.Unwrap(ctx, b, jobCtx("job-1")); err == nil {
			t.Errorf("Unwrap of %s bytes returned a %d-byte key and no error", name, len(got))
		}
	}
	_, wrapped, err := w.NewDataKey(ctx, jobCtx("job-1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, len(wrapped) / 2, len(wrapped) - 1} {
		bad := bytes.Clone(wrapped)
		bad[i] ^= 0x01
		if _, err := w.Unwrap(ctx, bad, jobCtx("job-1")); err == nil {
			t.Errorf("Unwrap of a wrapped key with byte %d flipped succeeded", i)
		}
	}
	if _, err := w.Unwrap(ctx, wrapped[:len(wrapped)-1], jobCtx("job-1")); err == nil {
		t.Errorf("Unwrap of a truncated wrapped key succeeded")
	}
}

func payloads(t *testing.T) map[string][]byte {
	big := make([]byte, 64<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"empty":   {},
		"url":     []byte("postgres://app:s3cr3t-ü@db.example.com:5432/app?sslmode=require"),
		"binary":  {0, 1, 2, 0xff, 0xfe, 0},
		"64 KiB":  big,
		"one":     {'x'},
		"newline": []byte("a\nb\r\n"),
	}
}

func testRoundTrip(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	k := secrets.NewKeeper(w)
	for name, p := range payloads(t) {
		sealed, err := k.Seal(ctx, "job-1", p)
		if err != nil {
			t.Fatalf("Seal %s: %v", name, err)
		}
		if len(p) >= 8 && bytes.Contains(sealed, p) {
			t.Errorf("sealed %s contains the plaintext", name)
		}
		got, err := k.Open(ctx, "job-1", sealed)
		if err != nil {
			t.Fatalf("Open %s: %v", name, err)
		}
		if !bytes.Equal(got, p) {
			t.Errorf("Open %s returned different bytes", name)
		}
	}
}

func testAnotherInstance(t *testing.T, w secrets.KeyWrapper, again func(*testing.T) secrets.KeyWrapper) {
	// The API seals, the worker (another process) opens.
	ctx := ctxFor(t)
	sealed, err := secrets.NewKeeper(w).Seal(ctx, "job-1", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := secrets.NewKeeper(again(t)).Open(ctx, "job-1", sealed)
	if err != nil || string(got) != "secret" {
		t.Fatalf("Open with a second wrapper: %q, %v", got, err)
	}
}

func testWrongJob(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	k := secrets.NewKeeper(w)
	sealed, err := k.Seal(ctx, "job-1", []byte("postgres://u:pw@h/db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"job-2", "job-10", "JOB-1", "job-1 "} {
		got, err := k.Open(ctx, id, sealed)
		if !errors.Is(err, secrets.ErrDecrypt) {
			t.Errorf("Open as %q: err = %v, want ErrDecrypt", id, err)
		}
		if got != nil {
			t.Errorf("Open as %q returned plaintext", id)
		}
		if err != nil && bytes.Contains([]byte(err.Error()), []byte("pw")) {
			t.Errorf("error mentions the plaintext: %v", err)
		}
	}
	if _, err := k.Open(ctx, "", sealed); err == nil {
		t.Errorf("Open with an empty job id succeeded")
	}
	if _, err := k.Seal(ctx, "", []byte("x")); err == nil {
		t.Errorf("Seal with an empty job id succeeded")
	}
}

func testTampering(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	k := secrets.NewKeeper(w)
	plain := []byte("postgres://u:pw@h/db")
	sealed, err := k.Seal(ctx, "job-1", plain)
	if err != nil {
		t.Fatal(err)
	}
	try := func(what string, b []byte) {
		t.Helper()
		got, err := k.Open(ctx, "job-1", b)
		if err == nil {
			t.Errorf("Open of a blob with %s succeeded (%q)", what, got)
		}
	}
	n := len(sealed)
	// Every byte of the tail (nonce, ciphertext, tag) and the header; a
	// sample of the wrapped key in between.
	for i := range n {
		if i > 8 && i < n-64 && i%7 != 0 {
			continue
		}
		b := bytes.Clone(sealed)
		b[i] ^= 0x80
		try(fmt.Sprintf("byte %d of %d flipped", i, n), b)
	}
	for _, l := range []int{0, 1, 2, 3, n / 2, n - 17, n - 1} {
		try(fmt.Sprintf("only %d of %d bytes", l, n), sealed[:l])
	}
	try("a byte appended", append(bytes.Clone(sealed), 0))
	if got, err := k.Open(ctx, "job-1", sealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the untouched blob no longer opens: %v", err)
	}
}

func testDistinct(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	k := secrets.NewKeeper(w)
	a, err := k.Seal(ctx, "job-1", []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal(ctx, "job-1", []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatalf("two seals of the same plaintext are equal")
	}
	for _, s := range [][]byte{a, b} {
		if got, err := k.Open(ctx, "job-1", s); err != nil || string(got) != "same" {
			t.Errorf("Open: %q, %v", got, err)
		}
	}
}

func testCredentials(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	k := secrets.NewKeeper(w)
	c := jobs.Credentials{SourceURL: "postgres://src:SENTINEL-PW@a/db", TargetURL: "postgres://dst:other@b/db"}
	sealed, err := k.SealCredentials(ctx, "job-1", c)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("SENTINEL-PW")) || bytes.Contains(sealed, []byte("postgres://")) {
		t.Fatalf("sealed credentials contain clear text")
	}
	got, err := k.OpenCredentials(ctx, "job-1", sealed)
	if err != nil || got != c {
		t.Fatalf("OpenCredentials: %+v, %v", got, err)
	}
	if _, err := k.OpenCredentials(ctx, "job-2", sealed); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("OpenCredentials for another job: %v, want ErrDecrypt", err)
	}
}

func testConcurrent(t *testing.T, w secrets.KeyWrapper, _ func(*testing.T) secrets.KeyWrapper) {
	ctx := ctxFor(t)
	k := secrets.NewKeeper(w)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 4 {
				id := fmt.Sprintf("job-%d-%d", i, j)
				s, err := k.Seal(ctx, id, []byte(id))
				if err != nil {
					errs <- err
					return
				}
				got, err := k.Open(ctx, id, s)
				if err != nil || string(got) != id {
					errs <- fmt.Errorf("open %s: %q, %v", id, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
