package sqlitekeys_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/apikeys/sqlitekeys"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type bundle struct {
	db    *sql.DB
	path  string
	clock *clock
}

func setup(t *testing.T) (*sqlitekeys.Keys, *bundle) {
	t.Helper()
	path := filepath.Join(t.TempDir(), sqlitedb.FileName)
	db, err := sqlitedb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	return sqlitekeys.New(db, c.Now), &bundle{db: db, path: path, clock: c}
}

func mustCreate(t *testing.T, k *sqlitekeys.Keys, name string) string {
	t.Helper()
	s, err := k.Create(context.Background(), name, apikeys.CreateOptions{})
	if err != nil {
		t.Fatalf("Create %s: %v", name, err)
	}
	return s
}

func TestCreateAndVerify(t *testing.T) {
	k, _ := setup(t)
	ctx := context.Background()
	secret := mustCreate(t, k, "ci")
	if !strings.HasPrefix(secret, "sk_live_") || len(secret) != len("sk_live_")+43 {
		t.Errorf("secret %q: want sk_live_ and 32 random bytes in base64url", secret)
	}
	ident, err := k.Verify(ctx, secret)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if ident.Principal != "ci" || ident.Operator {
		t.Errorf("identity %+v: want principal ci (the name), not an operator", ident)
	}
	owner := ident.KeyID
	if owner == "" || strings.Contains(secret, owner) || strings.Contains(owner, secret[8:16]) {
		t.Errorf("owner %q must be a non-empty id unrelated to the secret", owner)
	}
	again, err := k.Verify(ctx, secret)
	if err != nil || again != ident {
		t.Errorf("second Verify: %+v, %v; want the same owner %+v", again, err, owner)
	}
	list, err := k.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != owner || list[0].Name != "ci" || list[0].Principal != "ci" {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestWrongSecretsRejected(t *testing.T) {
	k, _ := setup(t)
	secret := mustCreate(t, k, "ci")
	for _, s := range []string{"", "sk_live_", secret[:len(secret)-1], secret + "x", strings.ToUpper(secret),
		strings.TrimPrefix(secret, "sk_live_"), "sk_test_" + secret[8:], strings.Repeat("sk_live_", 100)} {
		if owner, err := k.Verify(context.Background(), s); !errors.Is(err, apikeys.ErrInvalid) || owner != (apikeys.Identity{}) {
			t.Errorf("Verify(%+v) = %+v, %v; want ErrInvalid", s, owner, err)
		}
	}
}

func TestSeveralActiveKeysAndRotation(t *testing.T) {
	k, b := setup(t)
	ctx := context.Background()
	old := mustCreate(t, k, "ci")
	b.clock.Add(time.Hour)
	next := mustCreate(t, k, "ci-2")
	o1, err1 := k.Verify(ctx, old)
	o2, err2 := k.Verify(ctx, next)
	if err1 != nil || err2 != nil || o1 == o2 {
		t.Fatalf("two active keys: %+v %v, %+v %v; want both valid with distinct owners", o1, err1, o2, err2)
	}
	b.clock.Add(time.Hour)
	if _, err := k.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(ctx, old); !errors.Is(err, apikeys.ErrInvalid) {
		t.Errorf("revoked key still verifies: %v", err)
	}
	if o, err := k.Verify(ctx, next); err != nil || o != o2 {
		t.Errorf("the other key stopped working: %+v, %v", o, err)
	}
	list, err := k.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if list[0].Name != "ci" || list[0].RevokedAt == nil || !list[0].RevokedAt.Equal(b.clock.Now()) {
		t.Errorf("revoked key listed as %+v", list[0])
	}
	if list[1].Name != "ci-2" || list[1].RevokedAt != nil {
		t.Errorf("active key listed as %+v", list[1])
	}
	// The name is free again; the new key is a new key of the same
	// principal (the default principal is the name), so it keeps ci's jobs.
	again := mustCreate(t, k, "ci")
	if o, err := k.Verify(ctx, again); err != nil || o.KeyID == o1.KeyID || o.Principal != o1.Principal {
		t.Errorf("recreated key: owner %+v (old %+v), %v", o, o1, err)
	}
}

func TestNames(t *testing.T) {
	k, _ := setup(t)
	ctx := context.Background()
	mustCreate(t, k, "ci")
	_, err := k.Create(ctx, "ci", apikeys.CreateOptions{})
	if !errors.Is(err, apikeys.ErrNameTaken) || !strings.Contains(hint.Of(err), "keys revoke ci") {
		t.Errorf("duplicate active name: %v (hint %q)", err, hint.Of(err))
	}
	for _, bad := range []string{"", "has space", "semi;colon", "slash/", strings.Repeat("a", 65), "ü"} {
		if _, err := k.Create(ctx, bad, apikeys.CreateOptions{}); err == nil || hint.Of(err) == "" {
			t.Errorf("Create(%q): %v; want an error with a hint", bad, err)
		}
	}
	for _, good := range []string{"a", "alice-laptop", "ci.prod_2", strings.Repeat("a", 64)} {
		mustCreate(t, k, good)
	}
	if _, err := k.Revoke(ctx, "nobody"); !errors.Is(err, apikeys.ErrNotFound) {
		t.Errorf("Revoke unknown: %v, want ErrNotFound", err)
	}
	if _, err := k.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Revoke(ctx, "ci"); !errors.Is(err, apikeys.ErrNotFound) {
		t.Errorf("Revoke twice: %v, want ErrNotFound", err)
	}
}

func TestLastUsed(t *testing.T) {
	k, b := setup(t)
	ctx := context.Background()
	s := mustCreate(t, k, "ci")
	lastUsed := func() *time.Time {
		t.Helper()
		l, err := k.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l[0].LastUsedAt
	}
	if lastUsed() != nil {
		t.Errorf("unused key has a last-used time")
	}
	t0 := b.clock.Now()
	if _, err := k.Verify(ctx, s); err != nil {
		t.Fatal(err)
	}
	if lu := lastUsed(); lu == nil || !lu.Equal(t0) {
		t.Errorf("last used = %v, want %v", lu, t0)
	}
	b.clock.Add(10 * time.Second)
	k.Verify(ctx, s)
	if lu := lastUsed(); !lu.Equal(t0) {
		t.Errorf("last used rewritten within a minute: %v", lu)
	}
	b.clock.Add(time.Minute)
	k.Verify(ctx, s)
	if lu := lastUsed(); !lu.Equal(b.clock.Now()) {
		t.Errorf("last used = %v, want %v", lu, b.clock.Now())
	}
}

func TestSecretNeverStored(t *testing.T) {
	k, b := setup(t)
	ctx := context.Background()
	var secrets []string
	for _, n := range []string{"a", "b", "c"} {
		secrets = append(secrets, mustCreate(t, k, n))
	}
	k.Verify(ctx, secrets[0])
	k.Revoke(ctx, "b")
	if _, err := b.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(b.path + "*")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) || bytes.Contains(raw, []byte(s[8:])) {
				t.Errorf("%s contains a secret", filepath.Base(f))
			}
		}
	}
}

func TestConcurrentVerify(t *testing.T) {
	k, _ := setup(t)
	s := mustCreate(t, k, "ci")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := k.Verify(context.Background(), s); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
