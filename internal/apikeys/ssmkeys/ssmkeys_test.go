package ssmkeys_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/apikeys/ssmkeys"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

// clock is a settable test clock.
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
	ssm   *ssm.Client
	param string
	clock *clock
}

func setup(t *testing.T) (*ssmkeys.Verifier, *bundle) {
	t.Helper()
	cfg := awstest.Config(t, awstest.SSM)
	b := &bundle{
		ssm:   ssm.NewFromConfig(cfg),
		param: "/" + awstest.Name(t, "seren") + "/api-key",
		clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	v, err := ssmkeys.New(b.ssm, ssmkeys.Options{Param: b.param, Now: b.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v, b
}

func (b *bundle) put(t *testing.T, name, value string) {
	t.Helper()
	_, err := b.ssm.PutParameter(context.Background(), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value), Type: types.ParameterTypeSecureString, Overwrite: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("PutParameter %s: %v", name, err)
	}
}

func (b *bundle) del(t *testing.T, name string) {
	t.Helper()
	if _, err := b.ssm.DeleteParameter(context.Background(), &ssm.DeleteParameterInput{Name: aws.String(name)}); err != nil {
		t.Fatalf("DeleteParameter %s: %v", name, err)
	}
}

func mustVerify(t *testing.T, v *ssmkeys.Verifier, key string) string {
	t.Helper()
	id, err := v.Verify(context.Background(), key)
	if err != nil {
		t.Fatalf("Verify(%q): %v", key, err)
	}
	return id.Principal
}

func mustReject(t *testing.T, v *ssmkeys.Verifier, key string) {
	t.Helper()
	if owner, err := v.Verify(context.Background(), key); !errors.Is(err, apikeys.ErrInvalid) {
		t.Fatalf("Verify(%q) = %+v, %v; want ErrInvalid", key, owner, err)
	}
}

func TestVerifyMainKey(t *testing.T) {
	v, b := setup(t)
	const key = "sk_live_main_0123456789"
	b.put(t, b.param, key)

	owner := mustVerify(t, v, key)
	if owner == "" || strings.Contains(owner, key) || strings.Contains(owner, "0123456789") {
		t.Fatalf("owner id %q is empty or reveals the key", owner)
	}
	if again := mustVerify(t, v, key); again != owner {
		t.Fatalf("owner id not stable: %q then %q", owner, again)
	}
	if owner != ssmkeys.OwnerID(key) {
		t.Fatalf("owner %q != OwnerID(key) %q", owner, ssmkeys.OwnerID(key))
	}
	for _, bad := range []string{"", "sk_live_main_012345678", key + "x", strings.ToUpper(key), " " + key} {
		mustReject(t, v, bad)
	}
}

func TestSeveralKeysHaveDistinctOwners(t *testing.T) {
	v, b := setup(t)
	b.put(t, b.param, "main-key-aaaaaaaa")
	// More than one page of GetParametersByPath (10 per page).
	keys := []string{"main-key-aaaaaaaa"}
	for i := 0; i < 12; i++ {
		k := fmt.Sprintf("extra-key-%02d-bbbbbbbb", i)
		keys = append(keys, k)
		b.put(t, fmt.Sprintf("%ss/team-%02d", b.param, i), k)
	}
	// A nested path counts too (Recursive).
	b.put(t, b.param+"s/nested/ops", "nested-key-cccccccc")
	keys = append(keys, "nested-key-cccccccc")

	owners := map[string]string{}
	for _, k := range keys {
		o := mustVerify(t, v, k)
		if prev, dup := owners[o]; dup {
			t.Fatalf("keys %q and %q share owner %q", prev, k, o)
		}
		owners[o] = k
	}
	// A parameter merely sharing the prefix is not a key.
	b.put(t, b.param+"-other", "not-a-key-dddddddd")
	b.clock.Add(time.Hour)
	mustReject(t, v, "not-a-key-dddddddd")
}

func TestOnlyExtraKeys(t *testing.T) {
	v, b := setup(t)
	b.put(t, b.param+"s/ci", "ci-key-eeeeeeee")
	mustVerify(t, v, "ci-key-eeeeeeee")
}

func TestRotationWithoutRedeploy(t *testing.T) {
	v, b := setup(t)
	b.put(t, b.param, "old-key-11111111")
	oldOwner := mustVerify(t, v, "old-key-11111111")

	// Rotate: the main parameter now holds a new key.
	b.put(t, b.param, "new-key-22222222")

	// Within the cache lifetime the old key still works (cached) ...
	b.clock.Add(30 * time.Second)
	if got := mustVerify(t, v, "old-key-11111111"); got != oldOwner {
		t.Fatalf("owner changed within cache lifetime: %q", got)
	}
	// ... and the new key works at once: an unknown key re-reads early.
	mustVerify(t, v, "new-key-22222222")

	// After the TTL the old key is gone.
	b.clock.Add(ssmkeys.DefaultTTL)
	mustReject(t, v, "old-key-11111111")
	mustVerify(t, v, "new-key-22222222")
}

func TestRevokedExtraKeyStopsAfterTTL(t *testing.T) {
	v, b := setup(t)
	b.put(t, b.param, "main-key-33333333")
	extra := b.param + "s/contractor"
	b.put(t, extra, "contractor-key-44444444")
	mustVerify(t, v, "contractor-key-44444444")

	b.del(t, extra)
	b.clock.Add(ssmkeys.DefaultTTL - time.Second)
	mustVerify(t, v, "contractor-key-44444444") // still cached
	b.clock.Add(time.Second)
	mustReject(t, v, "contractor-key-44444444")
	mustVerify(t, v, "main-key-33333333")
}

func TestUnknownKeysDoNotHammerSSM(t *testing.T) {
	v, b := setup(t)
	b.put(t, b.param, "main-key-55555555")
	mustVerify(t, v, "main-key-55555555")
	mustReject(t, v, "unknown-1")

	// A key added now is not seen by an unknown-key re-read within
	// MinRefresh of the last read ...
	b.put(t, b.param+"s/late", "late-key-66666666")
	b.clock.Add(ssmkeys.DefaultMinRefresh / 2)
	mustReject(t, v, "late-key-66666666")
	// ... but is once MinRefresh has passed.
	b.clock.Add(ssmkeys.DefaultMinRefresh)
	mustVerify(t, v, "late-key-66666666")
}

func TestNoKeysConfigured(t *testing.T) {
	v, _ := setup(t)
	_, err := v.Verify(context.Background(), "anything")
	if err == nil || errors.Is(err, apikeys.ErrInvalid) {
		t.Fatalf("Verify with no parameter = %v; want a configuration error, not ErrInvalid", err)
	}
	if strings.Contains(err.Error(), "anything") {
		t.Fatalf("error reveals the presented key: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, p := range []string{"", "api-key", "/"} {
		if _, err := ssmkeys.New(&ssm.Client{}, ssmkeys.Options{Param: p}); err == nil {
			t.Errorf("param %q accepted", p)
		}
	}
	if _, err := ssmkeys.New(nil, ssmkeys.Options{Param: "/x"}); err == nil {
		t.Error("nil client accepted")
	}
}

// A key stored as JSON names its principal (and operator flag): a rotated
// key of the same principal owns the same jobs. Old plain keys keep their
// owner id as principal, so their existing jobs stay theirs.
func TestPrincipalsAndOperator(t *testing.T) {
	v, b := setup(t)
	b.put(t, b.param, "legacy-key-77777777")
	b.put(t, b.param+"s/alice-1", `{"key": "alice-key-11111111", "principal": "alice"}`)
	b.put(t, b.param+"s/alice-2", `{"key": "alice-key-22222222", "principal": "alice"}`)
	b.put(t, b.param+"s/ops", `{"key": "ops-key-33333333", "principal": "ops", "operator": true}`)
	b.put(t, b.param+"s/broken", `{"principal": "mallory"}`)

	if p := mustVerify(t, v, "legacy-key-77777777"); p != ssmkeys.OwnerID("legacy-key-77777777") {
		t.Errorf("legacy key: principal %q, want its owner id", p)
	}
	a1, err1 := v.Verify(context.Background(), "alice-key-11111111")
	a2, err2 := v.Verify(context.Background(), "alice-key-22222222")
	if err1 != nil || err2 != nil || a1.Principal != "alice" || a2.Principal != "alice" || a1.KeyID == a2.KeyID || a1.Operator {
		t.Errorf("alice's keys: %+v %v, %+v %v; want principal alice, distinct key ids, no operator", a1, err1, a2, err2)
	}
	if ops, err := v.Verify(context.Background(), "ops-key-33333333"); err != nil || ops.Principal != "ops" || !ops.Operator {
		t.Errorf("operator key: %+v, %v", ops, err)
	}
	// The JSON text itself is not a key, nor is a value without one.
	mustReject(t, v, `{"key": "alice-key-11111111", "principal": "alice"}`)
	mustReject(t, v, `{"principal": "mallory"}`)
}
