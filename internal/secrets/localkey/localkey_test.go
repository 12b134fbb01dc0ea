package localkey_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/localkey"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/secretstest"
)

func TestConformance(t *testing.T) {
	// Every wrapper of one test shares that test's key file.
	var mu sync.Mutex
	paths := map[*testing.T]string{}
	secretstest.Run(t, func(t *testing.T) secrets.KeyWrapper {
		mu.Lock()
		path, ok := paths[t]
		if !ok {
			path = filepath.Join(t.TempDir(), localkey.FileName)
			paths[t] = path
		}
		mu.Unlock()
		w, err := localkey.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return w
	})
}

func TestCreatesKeyFile0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, localkey.FileName)
	w, err := localkey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		t.Errorf("key file holds %q: want 32 bytes base64 (%v)", raw, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries after creating the key, want only the key file", len(entries))
	}

	// Reopening uses the same key: what one process sealed, the next opens.
	ctx := context.Background()
	sealed, err := secrets.NewKeeper(w).Seal(ctx, "job-1", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	w2, err := localkey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if w2.KeyID() != w.KeyID() {
		t.Errorf("reopened key has another id")
	}
	if got, err := secrets.NewKeeper(w2).Open(ctx, "job-1", sealed); err != nil || string(got) != "pw" {
		t.Errorf("open after reopening the key file: %q, %v", got, err)
	}
}

func TestRefusesReadableKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), localkey.FileName)
	w, err := localkey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := localkey.Open(path)
		if err == nil {
			t.Fatalf("key file with mode %04o accepted", mode)
		}
		if h := hint.Of(err); h != "chmod 600 "+path {
			t.Errorf("mode %04o: hint %q, want chmod 600", mode, h)
		}
	}
}

func TestKeyFileFormats(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i * 3)
	}
	for name, content := range map[string][]byte{
		"raw":       raw,
		"base64":    []byte(base64.StdEncoding.EncodeToString(raw)),
		"base64 nl": []byte(base64.StdEncoding.EncodeToString(raw) + "\n"),
		"base64url": []byte(" " + base64.RawURLEncoding.EncodeToString(raw) + "\r\n"),
	} {
		path := filepath.Join(t.TempDir(), localkey.FileName)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := localkey.Open(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ref, _ := localkey.New(raw)
		if w.KeyID() != ref.KeyID() {
			t.Errorf("%s: decoded another key", name)
		}
		w.Close()
	}
	for name, content := range map[string][]byte{
		"empty":    {},
		"short":    []byte("c2hvcnQ="),
		"31 bytes": raw[:31],
		"not b64":  []byte(strings.Repeat("!", 44)),
		"too long": []byte(base64.StdEncoding.EncodeToString(append(raw, raw...))),
	} {
		path := filepath.Join(t.TempDir(), localkey.FileName)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := localkey.Open(path); err == nil {
			t.Errorf("%s key file accepted", name)
		}
	}
}

func TestOtherMasterKeyIsNamed(t *testing.T) {
	ctx := context.Background()
	a, err := localkey.Open(filepath.Join(t.TempDir(), localkey.FileName))
	if err != nil {
		t.Fatal(err)
	}
	b, err := localkey.Open(filepath.Join(t.TempDir(), localkey.FileName))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := secrets.NewKeeper(a).Seal(ctx, "job-1", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = secrets.NewKeeper(b).Open(ctx, "job-1", sealed)
	if !errors.Is(err, secrets.ErrDecrypt) || !strings.Contains(err.Error(), "another master key") || hint.Of(err) == "" {
		t.Errorf("open with another master key: %v (hint %q)", err, hint.Of(err))
	}
}

func TestConcurrentFirstUse(t *testing.T) {
	// Several processes starting at once agree on one key.
	path := filepath.Join(t.TempDir(), "d", localkey.FileName)
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := localkey.Open(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = w.KeyID()
			w.Close()
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent first use produced different keys: %v", ids)
		}
	}
}

func TestClosed(t *testing.T) {
	w, err := localkey.Open(filepath.Join(t.TempDir(), localkey.FileName))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, _, err := w.NewDataKey(context.Background(), map[string]string{"job_id": "j"}); err == nil {
		t.Errorf("NewDataKey after Close succeeded")
	}
}
