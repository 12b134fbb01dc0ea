package api_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// workerMessage is how the worker turns an engine error into the job's
// error (worker.run.message, without the redaction of the job's URLs).
func workerMessage(err error) string {
	msg := err.Error()
	if h := hint.Of(err); h != "" {
		msg += ". Try: " + h
	}
	return msg
}

// connectError is the real error of connecting, as the source, to addr.
func connectError(t *testing.T, addr string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u := pg.MustParseURL("postgres://app:pw@" + addr + "/shop?connect_timeout=1&sslmode=disable")
	c, err := pg.Connect(ctx, u, "source")
	if err == nil {
		c.Close(ctx)
		t.Fatalf("connected to %s", addr)
	}
	return err
}

// An API key holder must not learn from a job's error which ports of a
// host are open, what a name resolves to, or the service's local paths.
func TestJobErrorsRevealNoAddressesPortsOrPaths(t *testing.T) {
	// A closed port.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	// An open port that is not PostgreSQL: it hangs up at once.
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// An open port that never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	cases := map[string]string{
		"closed port":  workerMessage(connectError(t, closedAddr)),
		"not postgres": workerMessage(connectError(t, hangup.Addr().String())),
		"no answer":    workerMessage(connectError(t, silent.Addr().String())),
		"libpq refused": `pg_dump: error: connection to server at "10.20.30.40", port 5433 failed: Connection refused` +
			"\n\tIs the server running on that host and accepting TCP/IP connections?",
	}
	var rendered []string
	for name, msg := range cases {
		job := e.mustSubmit(key)
		if _, err := e.Store.Apply(context.Background(), job.JobID, jobs.Failed(msg)); err != nil {
			t.Fatal(err)
		}
		appendLog(t, e, job.JobID, "job failed: "+msg)
		var v api.JobView
		e.do("GET", "/jobs/"+job.JobID, key, "").json(t, &v)
		logs := e.do("GET", "/jobs/"+job.JobID+"/logs", key, "").body
		for what, text := range map[string]string{"error": v.Error, "history": v.History[len(v.History)-1].Reason, "log": logs} {
			for _, leak := range []string{"127.0.0.1", "10.20.30.40", "refused", "timeout", "timed out", "EOF", "dial"} {
				if strings.Contains(strings.ToLower(text), strings.ToLower(leak)) {
					t.Errorf("%s: the %s shows %q: %s", name, what, leak, text)
				}
			}
			for _, l := range []net.Listener{hangup, silent} {
				port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
				if strings.Contains(text, port) {
					t.Errorf("%s: the %s shows port %s: %s", name, what, port, text)
				}
			}
		}
		if name != "libpq refused" {
			rendered = append(rendered, v.Error)
		}
	}
	for _, r := range rendered[1:] {
		if r != rendered[0] {
			t.Errorf("connection failures read differently:\n%s\n%s", rendered[0], r)
		}
	}
	if !strings.Contains(rendered[0], "source") {
		t.Errorf("the message does not say which side failed: %s", rendered[0])
	}

	// Paths of the service's machine and addresses in other errors.
	job := e.mustSubmit(key)
	msg := `pg_dump: error: could not open output file "/var/lib/seren/jobs/x/schema.sql": Permission denied; peer 192.0.2.55 and [fd00::1]:5432`
	if _, err := e.Store.Apply(context.Background(), job.JobID, jobs.Failed(msg)); err != nil {
		t.Fatal(err)
	}
	var v api.JobView
	res := e.do("GET", "/jobs/"+job.JobID, key, "")
	wantCode(t, res, http.StatusOK)
	res.json(t, &v)
	for _, leak := range []string{"/var/lib", "schema.sql", "192.0.2.55", "fd00::1"} {
		if strings.Contains(v.Error, leak) {
			t.Errorf("error shows %q: %s", leak, v.Error)
		}
	}
	if !strings.Contains(v.Error, "Permission denied") || !strings.Contains(v.Error, "[path]") {
		t.Errorf("error lost its meaning: %s", v.Error)
	}
	// The full text stays in the store for the operator.
	if j, _ := e.Store.Get(context.Background(), job.JobID); j.Error != msg {
		t.Errorf("stored error changed: %s", j.Error)
	}
}
