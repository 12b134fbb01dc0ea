package awslambda_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/serenorg/postgres-seren-replicator/internal/awslambda"
)

// loadEvent reads a JSON event fixture from testdata into v.
func loadEvent(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// seen is what the echo handler saw of a request.
type seen struct {
	Method, Path, RawQuery, Host, RemoteAddr, Body, Proto string
	PathID                                                string
	Query                                                 url.Values
	Header                                                http.Header
	ContentLength                                         int64
}

// echo routes like internal/api (method + pattern with {id}) and answers
// what it saw.
func echo() http.Handler {
	mux := http.NewServeMux()
	h := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s := seen{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host, RemoteAddr: r.RemoteAddr,
			Body: string(b), Proto: r.Proto, PathID: r.PathValue("id"), Query: r.URL.Query(), Header: r.Header,
			ContentLength: r.ContentLength}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Add("X-Multi", "x")
		w.Header().Add("X-Multi", "y")
		w.WriteHeader(http.StatusTeapot)
		_ = json.NewEncoder(w).Encode(s)
	}
	mux.HandleFunc("GET /jobs/{id}", h)
	mux.HandleFunc("POST /jobs", h)
	mux.HandleFunc("GET /jobs", h)
	return mux
}

func invoke(t *testing.T, h http.Handler, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, seen) {
	t.Helper()
	resp, err := awslambda.HTTPHandler(h)(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	if resp.StatusCode == http.StatusTeapot {
		if err := json.Unmarshal([]byte(resp.Body), &s); err != nil {
			t.Fatalf("body %q: %v", resp.Body, err)
		}
	}
	return resp, s
}

func TestRequestFromAPIGatewayEvent(t *testing.T) {
	var get, post events.APIGatewayV2HTTPRequest
	loadEvent(t, "apigw-v2-get.json", &get)
	loadEvent(t, "apigw-v2-post-base64.json", &post)

	named := get
	named.RequestContext.Stage = "dev"
	named.RawPath = "/dev" + get.RawPath

	escaped := get
	escaped.RawPath = "/jobs/a%2Fb%20c"
	escaped.RawQueryString = ""

	plainPost := post
	plainPost.IsBase64Encoded = false
	plainPost.Body = `{"command":"init"}`

	noRawPath := get
	noRawPath.RawPath = ""

	for _, tc := range []struct {
		name  string
		ev    events.APIGatewayV2HTTPRequest
		check func(t *testing.T, s seen)
	}{
		{"GET with query, headers, cookies", get, func(t *testing.T, s seen) {
			if s.Method != "GET" || s.Path != "/jobs/3f1c2a9e-0000-4000-8000-000000000001" ||
				s.PathID != get.PathParameters["id"] {
				t.Errorf("method %s path %s id %s", s.Method, s.Path, s.PathID)
			}
			if got := s.Query["tag"]; len(got) != 2 || got[0] != "a" || got[1] != "b" || s.Query.Get("verbose") != "1" {
				t.Errorf("query %v", s.Query)
			}
			if s.Header.Get("X-Api-Key") != "REPLACED-BY-TEST" || s.Header.Get("X-Multi") != "one,two" {
				t.Errorf("headers %v", s.Header)
			}
			if s.Header.Get("Cookie") != "session=abc; theme=dark" {
				t.Errorf("cookie %q", s.Header.Get("Cookie"))
			}
			if s.Host != "abc123.execute-api.us-east-1.amazonaws.com" || s.RemoteAddr != "203.0.113.7:0" || s.Proto != "HTTP/1.1" {
				t.Errorf("host %q remote %q proto %q", s.Host, s.RemoteAddr, s.Proto)
			}
			if s.Body != "" || s.ContentLength != 0 {
				t.Errorf("body %q length %d", s.Body, s.ContentLength)
			}
		}},
		{"POST with a base64 body", post, func(t *testing.T, s seen) {
			if s.Method != "POST" || s.Path != "/jobs" || s.Body != "{}" || s.ContentLength != 2 {
				t.Errorf("method %s path %s body %q length %d", s.Method, s.Path, s.Body, s.ContentLength)
			}
			if s.Host != "api.seren.cloud" || s.Header.Get("Content-Type") != "application/json" || s.Header.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("host %q headers %v", s.Host, s.Header)
			}
		}},
		{"POST with a text body", plainPost, func(t *testing.T, s seen) {
			if s.Body != `{"command":"init"}` || s.ContentLength != int64(len(plainPost.Body)) {
				t.Errorf("body %q length %d", s.Body, s.ContentLength)
			}
		}},
		{"named stage prefix is removed", named, func(t *testing.T, s seen) {
			if s.Path != get.RawPath {
				t.Errorf("path %q", s.Path)
			}
		}},
		{"escaped path segment", escaped, func(t *testing.T, s seen) {
			if s.PathID != "a/b c" {
				t.Errorf("path id %q (path %q)", s.PathID, s.Path)
			}
		}},
		{"path from the request context", noRawPath, func(t *testing.T, s seen) {
			if s.Path != get.RequestContext.HTTP.Path {
				t.Errorf("path %q", s.Path)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, s := invoke(t, echo(), tc.ev)
			if resp.StatusCode != http.StatusTeapot {
				t.Fatalf("status %d body %s", resp.StatusCode, resp.Body)
			}
			tc.check(t, s)
		})
	}
}

func TestBadEvents(t *testing.T) {
	var get events.APIGatewayV2HTTPRequest
	loadEvent(t, "apigw-v2-get.json", &get)

	badBase64 := get
	badBase64.IsBase64Encoded, badBase64.Body = true, "not base64!"
	resp, err := awslambda.HTTPHandler(echo())(context.Background(), badBase64)
	if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, `"error"`) {
		t.Errorf("bad base64: %v %d %s", err, resp.StatusCode, resp.Body)
	}

	badPath := get
	badPath.RawPath = "jobs"
	badPath.RequestContext.HTTP.Path = ""
	resp, err = awslambda.HTTPHandler(echo())(context.Background(), badPath)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad path: %v %d %s", err, resp.StatusCode, resp.Body)
	}

	// Not an HTTP API event at all (e.g. an SQS event sent to the API
	// function): an invocation error, not an HTTP answer.
	if _, err := awslambda.HTTPHandler(echo())(context.Background(), events.APIGatewayV2HTTPRequest{}); err == nil {
		t.Error("empty event: no error")
	}
}

func TestResponseToAPIGateway(t *testing.T) {
	var get events.APIGatewayV2HTTPRequest
	loadEvent(t, "apigw-v2-get.json", &get)

	resp, _ := invoke(t, echo(), get)
	if resp.IsBase64Encoded || !json.Valid([]byte(resp.Body)) {
		t.Errorf("JSON body: base64 %v body %q", resp.IsBase64Encoded, resp.Body)
	}
	if resp.Headers["Content-Type"] != "application/json" || resp.Headers["X-Multi"] != "x, y" {
		t.Errorf("headers %v", resp.Headers)
	}
	if len(resp.Cookies) != 2 || resp.Cookies[0] != "a=1" || resp.Cookies[1] != "b=2" || resp.Headers["Set-Cookie"] != "" {
		t.Errorf("cookies %v headers %v", resp.Cookies, resp.Headers)
	}

	binary := []byte{0x00, 0xff, 0x10, 'x'}
	resp, err := awslambda.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(binary)
	}))(context.Background(), get)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := base64.StdEncoding.DecodeString(resp.Body); resp.StatusCode != 200 || !resp.IsBase64Encoded || !bytes.Equal(b, binary) {
		t.Errorf("binary: status %d base64 %v body %q", resp.StatusCode, resp.IsBase64Encoded, resp.Body)
	}

	// A response that would not fit a Lambda result ends at a whole line.
	line := strings.Repeat("x", 999) + "\n"
	var writeErr error
	resp, err = awslambda.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		for writeErr == nil {
			_, writeErr = io.WriteString(w, line)
		}
	}))(context.Background(), get)
	if err != nil {
		t.Fatal(err)
	}
	if writeErr == nil || len(resp.Body) > awslambda.MaxResponseBody || len(resp.Body)%len(line) != 0 || len(resp.Body) == 0 {
		t.Errorf("capped body: %d bytes, write error %v", len(resp.Body), writeErr)
	}

	// Nothing written: 200 with an empty body.
	resp, err = awslambda.HTTPHandler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))(context.Background(), get)
	if err != nil || resp.StatusCode != 200 || resp.Body != "" {
		t.Errorf("empty: %v %d %q", err, resp.StatusCode, resp.Body)
	}
}

func TestRequestCarriesContext(t *testing.T) {
	var get events.APIGatewayV2HTTPRequest
	loadEvent(t, "apigw-v2-get.json", &get)
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	r, err := awslambda.Request(ctx, get)
	if err != nil {
		t.Fatal(err)
	}
	if r.Context().Value(key{}) != "v" {
		t.Error("request context is not the invocation's")
	}
	if _, err := awslambda.Request(ctx, events.APIGatewayV2HTTPRequest{}); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("empty event: %v", err)
	}
}
