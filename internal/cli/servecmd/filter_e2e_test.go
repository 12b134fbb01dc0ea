package servecmd_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// A legitimate filtered job, submitted through a real serve whose network
// policy allows the test's clusters (--allow-networks, set by startServe),
// completes and copies exactly the rows its row and time filters select:
// the fences refuse what is hostile, not what is ordinary.
func TestFilteredJobCopiesExactlyTheFilteredRows(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE orders (id int PRIMARY KEY, amount numeric, status text);
		INSERT INTO orders SELECT g, g, CASE WHEN g % 3 = 0 THEN 'paid' WHEN g % 3 = 1 THEN 'shipped' ELSE 'void' END
		FROM generate_series(1, 300) g;
		CREATE TABLE events (id int PRIMARY KEY, at timestamptz);
		INSERT INTO events SELECT g, now() - make_interval(days => g) FROM generate_series(1, 100) g;
		CREATE TABLE whole (id int PRIMARY KEY); INSERT INTO whole SELECT generate_series(1, 25);`)

	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "filters")
	srv := startServe(t, dataDir, serveTuning...)
	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}

	sub, err := c.Submit(t.Context(), jobs.Request{
		SchemaVersion: "1.0",
		Command:       jobs.CommandInit,
		SourceURL:     src.URL("postgres").Secret(),
		TargetURL:     dst.URL("postgres").Secret(),
		Filter: jobs.Filter{
			IncludeDatabases: []string{db},
			TableFilters:     []string{db + ".orders:amount > 100 AND status IN ('paid', 'shipped') AND lower(status) LIKE '%a%'"},
			TimeFilters:      []string{db + ".events:at:30 days"},
		},
		Options: jobs.Options{NoSync: true},
	}, "")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	v := waitEnded(t, c, sub.JobID, 3*time.Minute)
	if v.Status != jobs.StatusCompleted {
		t.Fatalf("job ended %s: %s\n%s", v.Status, v.Error, jobLog(t, c, sub.JobID))
	}
	for _, q := range []struct {
		table, where string
	}{
		{"orders", "amount > 100 AND status IN ('paid', 'shipped') AND lower(status) LIKE '%a%'"},
		{"events", "at >= now() - interval '30 days'"},
		{"whole", "true"},
	} {
		var want int
		if err := src.Conn(t, db).QueryRow(t.Context(), "SELECT count(*) FROM "+q.table+" WHERE "+q.where).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got := count(t, dst, db, q.table); got != want || want == 0 {
			t.Errorf("%s: target has %d rows, the filter selects %d", q.table, got, want)
		}
	}
	// Nothing outside the filter: every target row of orders matches it.
	var stray int
	if err := dst.Conn(t, db).QueryRow(t.Context(),
		"SELECT count(*) FROM orders WHERE NOT (amount > 100 AND status IN ('paid', 'shipped'))").Scan(&stray); err != nil {
		t.Fatal(err)
	}
	if stray != 0 {
		t.Errorf("%d rows outside the filter reached the target", stray)
	}
}
