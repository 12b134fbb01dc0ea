package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api/apitest"
	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// volatile are JSON keys whose values change from run to run (times,
// positions, ids, sizes, build data): a golden file shows them as "<v>"
// when set, keeping null as null so null-vs-[] stays visible.
var volatile = regexp.MustCompile(`(^|_)(at|lsn|seconds|ms|bytes|id|pid|key|version|commit|time|platform|log_url|url|attempts)$`)

var (
	nameHash = regexp.MustCompile(`(_[0-9a-f]{8})+\b`)
	size     = regexp.MustCompile(`\b\d+(\.\d+)? (B|kB|MB|GB)\b`)
)

// normalize rewrites a JSON document for comparison: volatile values
// blanked, the test's database name replaced by DB, map keys sorted.
func normalize(t *testing.T, doc, db string) string {
	t.Helper()
	var v any
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, doc)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than the JSON document:\n%s", doc)
	}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if e != nil && volatile.MatchString(k) {
					if _, isList := e.([]any); !isList {
						x[k] = "<v>"
						continue
					}
				}
				x[k] = walk(e)
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		case string:
			if db != "" {
				x = strings.ReplaceAll(x, db, "DB")
			}
			return size.ReplaceAllString(nameHash.ReplaceAllString(x, "_HASH"), "SIZE")
		}
		return v
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(walk(v)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// golden runs args, expects exit code want, and compares stdout (one JSON
// document) with testdata/<name>.golden.
func golden(t *testing.T, name, db string, want int, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, out, errOut := run(ctx, false, "", args...)
	if code != want {
		t.Fatalf("%s: exit %d, want %d\nstderr: %s", name, code, want, errOut)
	}
	got := normalize(t, out, db)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	wantDoc, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(wantDoc, []byte(got)) {
		t.Errorf("%s: -o json differs from %s (run with -update if intended)\ngot:\n%s", name, path, got)
	}
}

// TestJSONGolden runs every command with -o json against real clusters
// (and a real job service API) and compares the documents with golden
// files: the shape scripts rely on, [] never null, nothing but the
// document on stdout.
func TestJSONGolden(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, name text);
		INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 100) g;
		CREATE TABLE log (at timestamptz, line text)`)
	conn := []string{"--source", src.URL(db).Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db}
	with := func(args ...string) []string { return append(append(args, conn...), "-o", "json") }

	golden(t, "version", "", 0, "version", "-o", "json")
	golden(t, "version", "", 0, "version", "--json") // the hidden alias
	golden(t, "validate", db, 0, with("validate")...)
	src.Exec(t, db, "ALTER TABLE log REPLICA IDENTITY FULL")
	golden(t, "status-not-set-up", db, 0, with("status")...)
	golden(t, "init", db, 0, with("init", "--yes", "--no-sync")...)
	golden(t, "sync", db, 0, with("sync")...)
	golden(t, "verify", db, 0, with("verify")...)
	golden(t, "cutover-dry-run", db, 0, with("cutover", "--dry-run")...)
	golden(t, "cutover", db, 0, with("cutover", "--yes")...)

	dir := t.TempDir()
	golden(t, "keys-list-empty", "", 0, "keys", "list", "--data-dir", dir, "-o", "json")
	golden(t, "keys-create", "", 0, "keys", "create", "--name", "me", "--data-dir", dir, "-o", "json")
	golden(t, "keys-revoke", "", 0, "keys", "revoke", "me", "--data-dir", dir, "-o", "json")
	golden(t, "keys-list", "", 0, "keys", "list", "--data-dir", dir, "-o", "json")

	env := apitest.New(t, nil)
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	key := env.NewKey(t, "me")
	api := []string{"--remote-api", srv.URL, "--api-key", key, "-o", "json"}
	golden(t, "jobs-list-empty", "", 0, append([]string{"jobs", "list"}, api...)...)
	c := &apiclient.Client{BaseURL: srv.URL, APIKey: key}
	sub, err := c.Submit(context.Background(), jobs.Request{SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandInit,
		SourceURL: "postgres://u:pw@db.example.com/app", TargetURL: "postgres://u:pw@db2.example.com/app"}, "")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "jobs-list", "", 0, append([]string{"jobs", "list"}, api...)...)
	golden(t, "jobs-show", "", 0, append([]string{"jobs", "show", sub.JobID}, api...)...)
	golden(t, "jobs-cancel", "", 0, append([]string{"jobs", "cancel", sub.JobID}, api...)...)
}

// Shell completion offers -o values, the source's database names and the
// key's job ids.
func TestCompletion(t *testing.T) {
	src, _ := pgtest.Pair(t)
	db, _ := src.NewDB(t)
	ctx := context.Background()
	if _, out, _ := run(ctx, false, "", "__complete", "status", "-o", ""); !strings.Contains(out, "json") || !strings.Contains(out, "table") {
		t.Errorf("-o completion:\n%s", out)
	}
	if _, out, _ := run(ctx, false, "", "__complete", "init", "--source", src.URL("postgres").Secret(), "--include-databases", ""); !strings.Contains(out, db+"\n") {
		t.Errorf("database completion lacks %s:\n%s", db, out)
	}
	env := apitest.New(t, nil)
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	key := env.NewKey(t, "me")
	c := &apiclient.Client{BaseURL: srv.URL, APIKey: key}
	sub, err := c.Submit(ctx, jobs.Request{SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandInit,
		SourceURL: "postgres://u:pw@db.example.com/app", TargetURL: "postgres://u:pw@db2.example.com/app"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, out, _ := run(ctx, false, "", "__complete", "jobs", "show", "--remote-api", srv.URL, "--api-key", key, ""); !strings.Contains(out, sub.JobID) {
		t.Errorf("job id completion lacks %s:\n%s", sub.JobID, out)
	}
}
