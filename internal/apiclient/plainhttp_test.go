package apiclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	ctx := context.Background()
	// 192.0.2.1 (TEST-NET-1) is never dialled: the refusal comes first.
	for _, base := range []string{"http://192.0.2.1:9", "http://api.example.com", "http://[2001:db8::1]:8080"} {
		c := &apiclient.Client{BaseURL: base, APIKey: "sk_live_secret"}
		_, err := c.List(ctx, apiclient.ListOptions{})
		if !errors.Is(err, apiclient.ErrPlainHTTP) || !strings.Contains(hint.Of(err), "--insecure-http") {
			t.Errorf("%s: %v (hint %q), want ErrPlainHTTP with a hint", base, err, hint.Of(err))
		}
		if strings.Contains(err.Error(), "sk_live_secret") {
			t.Errorf("%s: error shows the key: %v", base, err)
		}
	}
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "api.localhost": true, "127.0.0.1": true, "127.9.9.9": true, "::1": true,
		"localhost.example.com": false, "10.0.0.1": false, "0.0.0.0": false, "::": false, "": false,
	} {
		if got := apiclient.IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v", host, got)
		}
	}
}

func TestRedirectsAreNotFollowedWithTheKey(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-api-key") != "" {
			leaked.Store(true)
		}
		w.Write([]byte(`{"jobs":[]}`))
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/jobs", http.StatusFound))
	defer redirector.Close()
	c := &apiclient.Client{BaseURL: redirector.URL, APIKey: "sk_live_secret"}
	if _, err := c.List(context.Background(), apiclient.ListOptions{}); err == nil {
		t.Error("a redirect was taken for an answer")
	}
	if leaked.Load() {
		t.Fatal("the API key followed a redirect to another server")
	}
}
