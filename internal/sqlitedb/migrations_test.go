package sqlitedb

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// Migration 5 on a database with jobs in it (one written by an earlier
// release): the active counter starts at the true count and worker_id is
// filled in from each job's document.
func TestMigration5Backfill(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := openPool(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations[:4] {
		if err := apply(ctx, db, i+1, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct{ id, status, doc string }{
		{"queued", "provisioning", `{"job_id":"queued"}`},
		{"launched", "provisioning", `{"job_id":"launched","worker_id":"101"}`},
		{"running", "running", `{"job_id":"running","worker_id":"102"}`},
		{"done", "completed", `{"job_id":"done","worker_id":"103"}`},
		{"failed", "failed", `{"job_id":"failed"}`},
	} {
		if _, err := db.Exec(`INSERT INTO jobs (id, owner, status, created_at, expires_at, version, doc)
			VALUES (?, 'o', ?, 1, 2, 1, ?)`, r.id, r.status, r.doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	var active int
	if err := db.QueryRow(`SELECT value FROM job_counters WHERE name = 'active'`).Scan(&active); err != nil || active != 3 {
		t.Fatalf("active counter %d (%v), want 3", active, err)
	}
	rows, err := db.Query(`SELECT id FROM jobs INDEXED BY jobs_active_worker
		WHERE status IN ('provisioning', 'running') AND worker_id IS NOT NULL ORDER BY created_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(ids) != 2 || ids[0] != "launched" || ids[1] != "running" {
		t.Fatalf("active jobs with a worker: %v, want [launched running]", ids)
	}
	var done string
	if err := db.QueryRow(`SELECT worker_id FROM jobs WHERE id = 'done'`).Scan(&done); err != nil || done != "103" {
		t.Fatalf("worker_id of an ended job: %q (%v), want 103", done, err)
	}
}

// The principals migration on a database with keys and jobs: jobs owned by
// a key id become the key's principal's (the key's name), in the column
// and in the document, so a rotated key of the same name sees them; where
// two keys of one principal used the same Idempotency-Key, the newest job
// keeps it.
func TestMigrationPrincipals(t *testing.T) {
	ctx := context.Background()
	mine := -1
	for i, m := range migrations {
		if strings.Contains(m, "ADD COLUMN principal") {
			mine = i
		}
	}
	if mine < 0 {
		t.Fatal("principals migration not found")
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := openPool(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations[:mine] {
		if err := apply(ctx, db, i+1, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []struct {
		id, name string
		revoked  any
	}{{"key_old", "ci", 5}, {"key_new", "ci", nil}, {"key_bob", "bob", nil}} {
		if _, err := db.Exec(`INSERT INTO api_keys (id, name, hash, created_at, revoked_at) VALUES (?, ?, ?, 1, ?)`,
			k.id, k.name, []byte(k.id), k.revoked); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range []struct {
		id, owner string
		idem      any
		created   int
	}{
		{"j1", "key_old", "same", 1}, {"j2", "key_new", "same", 2}, {"j3", "key_bob", "same", 3},
		{"j4", "key_new", nil, 4}, {"j5", "key_gone", "x", 5},
	} {
		doc := fmt.Sprintf(`{"job_id":%q,"owner":%q}`, j.id, j.owner)
		if j.idem != nil {
			doc = fmt.Sprintf(`{"job_id":%q,"owner":%q,"idempotency_key":%q}`, j.id, j.owner, j.idem)
		}
		if _, err := db.Exec(`INSERT INTO jobs (id, owner, idempotency_key, status, created_at, expires_at, version, doc)
			VALUES (?, ?, ?, 'completed', ?, 9, 1, ?)`, j.id, j.owner, j.idem, j.created, doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ owner, idem string }{
		"j1": {"ci", ""}, "j2": {"ci", "same"}, "j3": {"bob", "same"}, "j4": {"ci", ""}, "j5": {"key_gone", "x"},
	}
	for id, w := range want {
		var owner, docOwner, docIdem string
		var idem *string
		if err := db.QueryRow(`SELECT owner, idempotency_key, json_extract(doc, '$.owner'),
			COALESCE(json_extract(doc, '$.idempotency_key'), '') FROM jobs WHERE id = ?`, id).Scan(&owner, &idem, &docOwner, &docIdem); err != nil {
			t.Fatal(err)
		}
		got := ""
		if idem != nil {
			got = *idem
		}
		if owner != w.owner || docOwner != w.owner || got != w.idem || docIdem != w.idem {
			t.Errorf("job %s: owner %q doc owner %q idempotency %q doc %q; want owner %q idempotency %q",
				id, owner, docOwner, got, docIdem, w.owner, w.idem)
		}
	}
	var principal string
	if err := db.QueryRow(`SELECT principal FROM api_keys WHERE id = 'key_bob'`).Scan(&principal); err != nil || principal != "bob" {
		t.Errorf("key principal %q (%v), want its name", principal, err)
	}
}
