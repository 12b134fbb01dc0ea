package secrets_test

import (
	"context"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/localkey"
)

// FuzzOpen: no blob, however malformed, makes Open panic or succeed
// without the key.
func FuzzOpen(f *testing.F) {
	w, err := localkey.New(make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	k := secrets.NewKeeper(w)
	good, err := k.Seal(context.Background(), "job-1", []byte("secret"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 0xff, 0xff, 1})
	f.Add(good[:len(good)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := k.Open(context.Background(), "job-1", b)
		if err == nil && string(got) != "secret" {
			t.Fatalf("Open accepted a forged blob: %q", got)
		}
	})
}
