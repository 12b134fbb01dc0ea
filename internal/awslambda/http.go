package awslambda

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// MaxResponseBody bounds a response body: Lambda refuses a response over
// 6 MB, and a binary body grows by a third in base64. Writes beyond it
// fail, so a streamed log (one NDJSON line per Write) ends at a line
// boundary and the client resumes with ?after=.
const MaxResponseBody = 4 << 20

// HTTPHandler serves API Gateway HTTP API (payload format 2.0) events with
// h: the event becomes an *http.Request (method, raw path, query string,
// headers, cookies, base64 bodies, source IP), h's answer becomes the
// response event. Path parameters need no copying: h routes on the raw
// path itself, as it does behind `serve`.
func HTTPHandler(h http.Handler) func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		r, err := Request(ctx, ev)
		if err != nil {
			if errors.Is(err, errNotHTTP) {
				return events.APIGatewayV2HTTPResponse{}, err
			}
			return textResponse(http.StatusBadRequest, err.Error()), nil
		}
		w := newResponseWriter()
		h.ServeHTTP(w, r)
		return w.response(), nil
	}
}

var errNotHTTP = errors.New("the event is not an API Gateway HTTP API (payload 2.0) request")

// Request converts an API Gateway HTTP API event into the request it
// describes, with ctx as its context.
func Request(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		return nil, errNotHTTP
	}
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	if path == "" {
		path = "/"
	}
	// A named stage appears in front of the path; the $default stage (the
	// one deploy/aws/terraform creates) adds nothing.
	if st := ev.RequestContext.Stage; st != "" && st != "$default" {
		if rest, ok := strings.CutPrefix(path, "/"+st); ok && (rest == "" || rest[0] == '/') {
			path = rest
			if path == "" {
				path = "/"
			}
		}
	}
	target := path
	if ev.RawQueryString != "" {
		target += "?" + ev.RawQueryString
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fmt.Errorf("bad request path %q", target)
	}

	var body []byte
	if ev.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return nil, errors.New("the request body is not valid base64")
		}
	} else {
		body = []byte(ev.Body)
	}

	r, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	r.RequestURI = u.RequestURI()
	r.ContentLength = int64(len(body))
	for k, v := range ev.Headers {
		// API Gateway joins repeated headers with commas; so does HTTP.
		r.Header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	r.Header.Del("Content-Length") // ContentLength is the truth
	r.Host = r.Header.Get("Host")
	if r.Host == "" {
		r.Host = ev.RequestContext.DomainName
	}
	r.Header.Del("Host")
	if ip := ev.RequestContext.HTTP.SourceIP; ip != "" {
		r.RemoteAddr = net.JoinHostPort(ip, "0")
	}
	if p := ev.RequestContext.HTTP.Protocol; p != "" {
		if major, minor, ok := http.ParseHTTPVersion(p); ok {
			r.Proto, r.ProtoMajor, r.ProtoMinor = p, major, minor
		}
	}
	if r.Header.Get("X-Forwarded-Proto") == "" {
		r.Header.Set("X-Forwarded-Proto", "https") // API Gateway only serves HTTPS
	}
	return r, nil
}

// responseWriter buffers a response for the Lambda result.
type responseWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
	full   bool
}

func newResponseWriter() *responseWriter { return &responseWriter{header: http.Header{}} }

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

var errBodyTooLarge = errors.New("response body exceeds what a Lambda response can carry")

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.full || w.body.Len()+len(p) > MaxResponseBody {
		w.full = true
		return 0, errBodyTooLarge
	}
	return w.body.Write(p)
}

// Flush does nothing: the body goes out when the handler returns.
func (w *responseWriter) Flush() {}

func (w *responseWriter) response() events.APIGatewayV2HTTPResponse {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	resp := events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: map[string]string{}}
	keys := make([]string, 0, len(w.header))
	for k := range w.header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := w.header[k]
		if len(vs) == 0 {
			continue
		}
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			resp.Cookies = append(resp.Cookies, vs...)
			continue
		}
		resp.Headers[k] = strings.Join(vs, ", ")
	}
	b := w.body.Bytes()
	if isText(w.header.Get("Content-Type")) && utf8.Valid(b) {
		resp.Body = string(b)
	} else if len(b) > 0 {
		resp.Body = base64.StdEncoding.EncodeToString(b)
		resp.IsBase64Encoded = true
	}
	return resp
}

// isText reports whether a content type is sent as text (JSON, NDJSON,
// plain text); anything else is base64-encoded.
func isText(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	switch {
	case ct == "", strings.HasPrefix(ct, "text/"), strings.HasSuffix(ct, "json"), strings.HasSuffix(ct, "+json"),
		strings.HasSuffix(ct, "xml"), ct == "application/javascript":
		return true
	}
	return false
}

// textResponse is a JSON error answer in the API's shape ({"error": …}).
func textResponse(status int, msg string) events.APIGatewayV2HTTPResponse {
	b, _ := json.Marshal(map[string]string{"error": msg}) // a map of strings always marshals
	return events.APIGatewayV2HTTPResponse{StatusCode: status,
		Headers: map[string]string{"Content-Type": "application/json"}, Body: string(b) + "\n"}
}
