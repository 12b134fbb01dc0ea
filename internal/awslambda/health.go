package awslambda

import (
	"bytes"
	"net/http"
	"sync"
	"time"
)

// DefaultHealthCacheTTL is how long the API function reuses a healthy
// GET /health answer: load balancers and uptime checks may call it every
// few seconds, and each uncached call is a DynamoDB read.
const DefaultHealthCacheTTL = 30 * time.Second

// healthCache serves GET /health from the last healthy answer for ttl (per
// warm Lambda container); an unhealthy answer is never cached, so a
// failure shows at once and recovery within ttl.
type healthCache struct {
	next http.Handler
	ttl  time.Duration
	now  func() time.Time

	mu     sync.Mutex
	at     time.Time
	header http.Header
	body   []byte
}

func (c *healthCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/health" {
		c.next.ServeHTTP(w, r)
		return
	}
	c.mu.Lock()
	fresh := c.body != nil && c.now().Sub(c.at) < c.ttl
	header, body := c.header, c.body
	c.mu.Unlock()
	if fresh {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		return
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	c.next.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.code)
	_, _ = w.Write(rec.body.Bytes())
	if rec.code == http.StatusOK {
		c.mu.Lock()
		c.at, c.header, c.body = c.now(), rec.header.Clone(), bytes.Clone(rec.body.Bytes())
		c.mu.Unlock()
	}
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
