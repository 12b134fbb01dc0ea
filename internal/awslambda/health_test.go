package awslambda_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
)

// GET /health does not read DynamoDB on every call: a healthy answer is
// reused for DefaultHealthCacheTTL (here: the table is deleted after the
// first call, and the second still answers 200 from the cache); after the
// TTL the store is checked again and its failure shows.
func TestHealthIsCached(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, nil)
	var offset atomic.Int64
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	fn, err := awslambda.NewAPI(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	health := func() int {
		resp, err := fn.Handle(context.Background(), s.apiEvent(t, http.MethodGet, "/health", nil, ""))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if code := health(); code != http.StatusOK {
		t.Fatalf("first health: %d", code)
	}
	if _, err := s.ddb.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &s.table}); err != nil {
		t.Fatal(err)
	}
	if code := health(); code != http.StatusOK {
		t.Errorf("second health within the TTL: %d; want 200 from the cache (no DynamoDB read)", code)
	}
	offset.Store(int64(awslambda.DefaultHealthCacheTTL + time.Second))
	if code := health(); code != http.StatusServiceUnavailable {
		t.Errorf("health after the TTL with the table gone: %d; want 503", code)
	}
}

// A job cancelled through the API is counted as finished (JobCancelled):
// no worker will ever record it.
func TestCancelledJobIsCounted(t *testing.T) {
	s := newStack(t)
	cfg := s.config(t, nil)
	sb := newSubmitter(t, s, cfg)
	id := sb.submit(t, 5_000_000_000)
	resp, err := sb.fn.Handle(context.Background(), s.apiEvent(t, http.MethodPost, "/jobs/"+id+"/cancel", nil, s.apiKey))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %v %d %s", err, resp.StatusCode, resp.Body)
	}
	if sum, ms := s.metricSum(t, "JobCancelled"); sum != 1 {
		t.Errorf("JobCancelled sum %v (%v), want 1", sum, ms)
	}
}
