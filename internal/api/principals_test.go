package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

func listIDs(t *testing.T, e *env, key, query string) map[string]string {
	t.Helper()
	res := e.do("GET", "/jobs"+query, key, "")
	wantCode(t, res, http.StatusOK)
	var list api.ListResponse
	res.json(t, &list)
	out := map[string]string{}
	for _, j := range list.Jobs {
		out[j.JobID] = j.Principal
	}
	return out
}

// Attack (before principals): rotating a key orphaned its jobs. Jobs belong
// to the key's principal, so the new key (and a key re-created under the
// old name) sees and cancels them after the old key is revoked.
func TestRotatedKeyKeepsItsJobs(t *testing.T) {
	e := setup(t, nil)
	old := e.NewKey(t, "ci")
	job := e.mustSubmit(old)

	next := e.NewKeyWith(t, "ci-2", apikeys.CreateOptions{Principal: "ci"})
	rev, err := e.Keys.Revoke(context.Background(), "ci")
	if err != nil {
		t.Fatal(err)
	}
	if rev.Key.Principal != "ci" || rev.LastOfPrincipal {
		t.Fatalf("revoke: %+v; ci-2 is still an active key of principal ci", rev)
	}
	wantCode(t, e.do("GET", "/jobs/"+job.JobID, old, ""), http.StatusUnauthorized)
	res := e.do("GET", "/jobs/"+job.JobID, next, "")
	wantCode(t, res, http.StatusOK)
	var v api.JobView
	res.json(t, &v)
	if v.Principal != "ci" {
		t.Errorf("job principal %q, want ci", v.Principal)
	}
	if ids := listIDs(t, e, next, ""); ids[job.JobID] != "ci" {
		t.Errorf("the rotated key's list %v lacks the job", ids)
	}
	again := e.NewKey(t, "ci") // same name: same principal
	wantCode(t, e.do("GET", "/jobs/"+job.JobID+"/logs", again, ""), http.StatusOK)
	if res := e.do("POST", "/jobs/"+job.JobID+"/cancel", next, ""); res.code != http.StatusOK && res.code != http.StatusAccepted {
		t.Fatalf("cancel with the rotated key: %d %s", res.code, res.body)
	}
	if j, _ := e.Store.Get(context.Background(), job.JobID); j.Status != jobs.StatusCancelled {
		t.Fatalf("job %s after the rotated key cancelled it", j.Status)
	}
}

// Attack: principal bob tries to see, list and cancel principal alice's
// job (404, 400, nothing changes); an operator key can do all three.
func TestPrincipalsAreIsolatedOperatorsAreNot(t *testing.T) {
	e := setup(t, nil)
	alice, bob := e.NewKey(t, "alice"), e.NewKey(t, "bob")
	ops := e.NewKeyWith(t, "ops", apikeys.CreateOptions{Operator: true})
	job := e.mustSubmit(alice)

	for _, r := range []struct{ method, path string }{
		{"GET", "/jobs/" + job.JobID},
		{"GET", "/jobs/" + job.JobID + "/logs"},
		{"POST", "/jobs/" + job.JobID + "/cancel"},
	} {
		wantCode(t, e.do(r.method, r.path, bob, ""), http.StatusNotFound)
	}
	res := e.do("GET", "/jobs?principal=alice", bob, "")
	wantCode(t, res, http.StatusBadRequest)
	if eb := res.errBody(t); eb.Field != "principal" {
		t.Errorf("bob listing alice's jobs: %s", res.body)
	}
	if ids := listIDs(t, e, bob, "?principal=bob"); len(ids) != 0 {
		t.Errorf("bob's own list: %v", ids)
	}
	if j, _ := e.Store.Get(context.Background(), job.JobID); j.Status != jobs.StatusProvisioning {
		t.Fatalf("bob changed alice's job: %s", j.Status)
	}

	res = e.do("GET", "/jobs/"+job.JobID, ops, "")
	wantCode(t, res, http.StatusOK)
	var v api.JobView
	res.json(t, &v)
	if v.Principal != "alice" {
		t.Errorf("operator sees principal %q, want alice", v.Principal)
	}
	if ids := listIDs(t, e, ops, "?principal=alice"); ids[job.JobID] != "alice" {
		t.Errorf("operator's list of alice's jobs: %v", ids)
	}
	if ids := listIDs(t, e, ops, ""); len(ids) != 0 {
		t.Errorf("operator's own list shows other principals' jobs: %v", ids)
	}
	if res := e.do("POST", "/jobs/"+job.JobID+"/cancel", ops, ""); res.code != http.StatusOK && res.code != http.StatusAccepted {
		t.Fatalf("operator cancel: %d %s", res.code, res.body)
	}
	if j, _ := e.Store.Get(context.Background(), job.JobID); j.Status != jobs.StatusCancelled || j.Owner != "alice" {
		t.Fatalf("after the operator's cancel: %s owned by %q", j.Status, j.Owner)
	}
}
