package keyscmd

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/apikeys/sqlitekeys"
	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/sqlitedb"
)

func TestCreateListRevoke(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	create := func(name string) string {
		t.Helper()
		io, _, out, errOut := iostreams.Test()
		if err := runCreate(ctx, &Options{IO: io, DataDir: dir, Name: name}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		secret := lines[len(lines)-1]
		if !strings.HasPrefix(secret, apikeys.SecretPrefix) {
			t.Fatalf("last stdout line %q is not a key", secret)
		}
		if strings.Contains(errOut.String(), secret) {
			t.Fatal("the secret was also printed on stderr")
		}
		return secret
	}
	first, second := create("ci"), create("laptop")
	if first == second {
		t.Fatal("two keys with the same secret")
	}

	// Stored hashed: the secret is nowhere in the database files.
	for _, f := range []string{sqlitedb.FileName, sqlitedb.FileName + "-wal"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if strings.Contains(string(b), first) {
			t.Fatalf("%s holds the secret in clear", f)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, sqlitedb.FileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode %v, %v", st.Mode(), err)
	}

	// A taken name is refused with a way out.
	io, _, _, _ := iostreams.Test()
	err := runCreate(ctx, &Options{IO: io, DataDir: dir, Name: "ci"})
	if !errors.Is(err, apikeys.ErrNameTaken) || !strings.Contains(hint.Of(err), "keys revoke ci") {
		t.Fatalf("duplicate name: %v (hint %q)", err, hint.Of(err))
	}

	list := func() []apikeys.KeyInfo {
		t.Helper()
		io, _, out, _ := iostreams.Test()
		if err := runList(ctx, &Options{IO: io, DataDir: dir, Output: clio.Output{Format: "json"}}); err != nil {
			t.Fatal(err)
		}
		var keys []apikeys.KeyInfo
		if err := json.Unmarshal(out.Bytes(), &keys); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if strings.Contains(out.String(), first) || strings.Contains(out.String(), second) {
			t.Fatal("list shows a secret")
		}
		return keys
	}
	if ks := list(); len(ks) != 2 || ks[0].Name != "ci" || ks[1].Name != "laptop" || ks[0].RevokedAt != nil {
		t.Fatalf("keys %+v", ks)
	}
	io, _, out, _ := iostreams.Test()
	if err := runList(ctx, &Options{IO: io, DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	if table := out.String(); !strings.HasPrefix(table, "NAME") || !strings.Contains(table, "laptop") || !strings.Contains(table, "active") {
		t.Fatalf("table:\n%s", table)
	}

	// Revoke: that key stops working, the other keeps working (rotation).
	io, _, _, _ = iostreams.Test()
	if err := runRevoke(ctx, &Options{IO: io, DataDir: dir, Name: "ci"}); err != nil {
		t.Fatal(err)
	}
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, sqlitedb.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v := sqlitekeys.New(db, nil)
	if _, err := v.Verify(ctx, first); !errors.Is(err, apikeys.ErrInvalid) {
		t.Fatalf("revoked key verifies: %v", err)
	}
	if _, err := v.Verify(ctx, second); err != nil {
		t.Fatalf("other key stopped working: %v", err)
	}
	if ks := list(); ks[0].RevokedAt == nil {
		t.Fatal("revocation not listed")
	}
	if err := runRevoke(ctx, &Options{IO: io, DataDir: dir, Name: "ci"}); !errors.Is(err, apikeys.ErrNotFound) {
		t.Fatalf("revoking twice: %v", err)
	}
	// The same name can be issued again once revoked.
	create("ci")
}

func TestCreateNeedsAName(t *testing.T) {
	io, _, _, _ := iostreams.Test()
	err := runCreate(context.Background(), &Options{IO: io, DataDir: t.TempDir()})
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 2 {
		t.Fatalf("err %v: want a usage error", err)
	}
}

func TestKeysDoNotCreateAMasterKey(t *testing.T) {
	dir := t.TempDir()
	io, _, _, _ := iostreams.Test()
	if err := runCreate(context.Background(), &Options{IO: io, DataDir: dir, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "master.key")); !os.IsNotExist(err) {
		t.Fatalf("keys create made a master key file: %v", err)
	}
}

// Attack (before --cancel-jobs): revoking a key left its jobs running. With
// --cancel-jobs, revoking the principal's last key leaves it no active job.
func TestRevokeCancelJobs(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	for _, k := range []Options{{Name: "alice"}, {Name: "alice-2", Principal: "alice"}, {Name: "bob"}} {
		io, _, _, _ := iostreams.Test()
		k.IO, k.DataDir = io, dir
		if err := runCreate(ctx, &k); err != nil {
			t.Fatal(err)
		}
	}
	set, err := backends.Open(ctx, backends.Config{Backend: backends.Embedded, DataDir: dir}, backends.PartStore)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	submit := func(owner string, running bool) string {
		t.Helper()
		j, err := set.Store.Create(ctx, &jobs.Job{Owner: owner, Spec: jobs.Spec{Command: jobs.CommandInit}})
		if err != nil {
			t.Fatal(err)
		}
		if running {
			j, err = set.Store.Apply(ctx, j.ID, jobs.Provisioned("4242", "local", ""))
			if err == nil {
				_, err = set.Store.Apply(ctx, j.ID, jobs.Started("4242").By(jobs.LeaseOf(j)))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return j.ID
	}
	aliceJobs := []string{submit("alice", false), submit("alice", true)}
	bobJob := submit("bob", true)
	statusOf := func(id string) jobs.Status {
		t.Helper()
		j, err := set.Store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j.Status
	}

	// alice-2 is still active: alice's jobs are hers and keep running.
	io, _, _, errOut := iostreams.Test()
	if err := runRevoke(ctx, &Options{IO: io, DataDir: dir, Name: "alice", CancelJobs: true}); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(aliceJobs[1]); st != jobs.StatusRunning || !strings.Contains(errOut.String(), "still has an active key") {
		t.Fatalf("after revoking one of two keys: job %s; stderr %q", st, errOut)
	}
	io, _, _, errOut = iostreams.Test()
	if err := runRevoke(ctx, &Options{IO: io, DataDir: dir, Name: "alice-2", CancelJobs: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "Cancelled 2 active job(s)") {
		t.Errorf("stderr %q", errOut)
	}
	active, err := set.Store.Active(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range active {
		if j.Owner == "alice" {
			t.Errorf("alice's job %s is still %s after her last key was revoked with --cancel-jobs", j.ID, j.Status)
		}
	}
	for _, id := range aliceJobs {
		if st := statusOf(id); st != jobs.StatusCancelled {
			t.Errorf("alice's job %s: %s, want cancelled", id, st)
		}
	}
	if st := statusOf(bobJob); st != jobs.StatusRunning {
		t.Errorf("bob's job was touched: %s", st)
	}
}

// keys list and revoke only read: without --data-dir they must not create
// a service database under the home directory.
func TestListWithoutDataDirCreatesNothing(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("SEREN_DATA_DIR", "")
	io, _, out, _ := iostreams.Test()
	if err := runList(context.Background(), &Options{IO: io, Output: clio.Output{Format: "json"}}); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("keys list -o json: %q, want []", out)
	}
	if err := runRevoke(context.Background(), &Options{IO: io, Name: "me"}); err == nil {
		t.Fatal("revoke of a key in no database succeeded")
	}
	var files []string
	_ = filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if p != home {
			files = append(files, p)
		}
		return nil
	})
	if len(files) > 0 {
		t.Fatalf("keys list/revoke created %v", files)
	}
}
