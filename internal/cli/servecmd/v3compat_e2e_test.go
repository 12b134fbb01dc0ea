package servecmd_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestV3ClientRequestBodyCompletes submits the exact body the original
// (v3, Rust) client sends for `init --remote --yes --no-sync
// --include-databases DB --exclude-tables DB.skipped` (options.yes, a null
// filter list) to a real serve, and expects the job to complete with the
// rows on the target and the excluded table left out.
func TestV3ClientRequestBodyCompletes(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept SELECT generate_series(1, 40);
		CREATE TABLE skipped (id int PRIMARY KEY); INSERT INTO skipped SELECT generate_series(1, 5);`)

	raw, err := os.ReadFile(filepath.Join("..", "..", "jobs", "testdata", "v3", "init-request.json"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.NewReplacer("SOURCE_URL", src.URL("postgres").Secret(),
		"TARGET_URL", dst.URL("postgres").Secret(), "DATABASE", db).Replace(string(raw))

	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "v3")
	srv := startServe(t, dataDir, serveTuning...)

	req, _ := http.NewRequest(http.MethodPost, srv.url+"/jobs", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST /jobs with the v3 body: %d %s", resp.StatusCode, b)
	}
	// The fields the v3 client reads from the answer (JobResponse).
	var sub struct {
		JobID  string `json:"job_id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &sub); err != nil || sub.JobID == "" || sub.Status == "" {
		t.Fatalf("answer %s: %v", b, err)
	}

	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}
	v := waitEnded(t, c, sub.JobID, 3*time.Minute)
	if v.Status != jobs.StatusCompleted {
		t.Fatalf("job ended %s: %s\n%s", v.Status, v.Error, jobLog(t, c, sub.JobID))
	}
	if n := count(t, dst, db, "kept"); n != 40 {
		t.Fatalf("target has %d rows in kept, want 40", n)
	}
	var exists bool
	if err := dst.Conn(t, db).QueryRow(t.Context(), "SELECT to_regclass('public.skipped') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("the excluded table was copied")
	}
}
