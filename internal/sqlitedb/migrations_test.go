package sqlitedb

import (
	"context"
	"path/filepath"
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
