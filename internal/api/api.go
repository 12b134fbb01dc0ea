package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/serenorg/postgres-seren-replicator/internal/apikeys"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
	"github.com/serenorg/postgres-seren-replicator/internal/queue"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets"
	"github.com/serenorg/postgres-seren-replicator/internal/telemetry"
)

// Canceller stops a job's worker and marks the job cancelled; the service
// layer provides it. It returns an error matching jobs.ErrConflict when the
// job is already terminal.
type Canceller interface {
	Cancel(ctx context.Context, jobID string) error
}

// Defaults for Config.
const (
	DefaultMaxConcurrentJobs = 10
	DefaultRateLimit         = 1000 // requests per second, the guide's API throttle
	// DefaultKeyRateLimit is requests per second per API key (serve), so
	// one key cannot take the whole of DefaultRateLimit.
	DefaultKeyRateLimit    = 100
	DefaultLogPollInterval = time.Second
	DefaultRetryAfter      = 30 * time.Second
)

// APIKeyHeader carries the API key on every job route.
const APIKeyHeader = "x-api-key"

// IdempotencyKeyHeader makes a retried submit return the job it created.
const IdempotencyKeyHeader = "Idempotency-Key"

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// Config wires the handler to the service's pieces.
type Config struct {
	Store   *jobstore.Store // required
	Queue   queue.Queue     // required
	Keeper  *secrets.Keeper // required: seals credentials before they are stored
	Keys    apikeys.Verifier
	Logs    joblog.Log
	Metrics telemetry.Metrics // nil: not recorded. If it has Handler() http.Handler, GET /metrics serves it.
	// Canceller stops a running worker; nil: cancel only marks the job
	// cancelled (the worker notices on its next heartbeat).
	Canceller Canceller

	// MaxConcurrentJobs is how many jobs may be provisioning or running at
	// once over all keys; a submit beyond it answers 429. Default 10.
	MaxConcurrentJobs int
	// RateLimit is requests per second over all authenticated clients
	// (default 1000), with RateBurst (default RateLimit). KeyRateLimit/
	// KeyRateBurst apply per API key (defaults: the global values; serve
	// sets DefaultKeyRateLimit). Negative disables. Requests that fail
	// authentication spend neither.
	RateLimit    float64
	RateBurst    int
	KeyRateLimit float64
	KeyRateBurst int
	// AuthFailureRate is failed authentications per second per client
	// address (default DefaultAuthFailureRate, negative disables), with
	// AuthFailureBurst (default DefaultAuthFailureBurst); beyond them the
	// address is answered 429 without its key being checked.
	// AuthFailureClients bounds the addresses tracked (default
	// DefaultAuthFailureClients).
	AuthFailureRate    float64
	AuthFailureBurst   int
	AuthFailureClients int
	// RequestKey keys the fingerprint of a submitted request (its URLs
	// included) stored with a job that has an Idempotency-Key, so a reuse
	// of the key with another request is answered 409 without the URLs
	// being stored in clear. Every API process of one service must use
	// the same key. Empty: a salted hash, which a reader of the job store
	// could test guesses of the URLs against.
	RequestKey []byte
	// RetryAfter is the Retry-After sent when the concurrent-job limit is
	// reached. Default 30s.
	RetryAfter time.Duration

	// LogPollInterval is how often a followed log checks for new lines.
	LogPollInterval time.Duration
	// FollowTimeout ends a followed log stream after this long (the client
	// reconnects with ?after=); 0 follows until the job ends. Behind API
	// Gateway set it below the integration timeout.
	FollowTimeout time.Duration

	// Version is reported by GET /health.
	Version string
	Now     func() time.Time
	Logger  *slog.Logger
}

// handler is the API. It holds no package-level state, so several can run
// in one process (tests, Lambda).
type handler struct {
	cfg     Config
	mux     *http.ServeMux
	log     *slog.Logger
	now     func() time.Time
	global  *rate.Limiter
	metrics http.Handler

	keyMu  sync.Mutex
	perKey map[string]*rate.Limiter

	// failures limits failed authentications per client address; nil: off.
	failures *failureLimiter

	// admission decides submissions against the concurrent-job limit, so
	// a burst cannot overshoot it within this process.
	admission admitter
}

// New returns the API handler. It panics if a required piece (Store,
// Queue, Keeper, Keys, Logs) is missing: that is a wiring mistake, not
// bad input.
func New(cfg Config) http.Handler {
	switch {
	case cfg.Store == nil:
		panic("api.New: Config.Store is required")
	case cfg.Queue == nil:
		panic("api.New: Config.Queue is required")
	case cfg.Keeper == nil:
		panic("api.New: Config.Keeper is required")
	case cfg.Keys == nil:
		panic("api.New: Config.Keys is required")
	case cfg.Logs == nil:
		panic("api.New: Config.Logs is required")
	}
	if cfg.MaxConcurrentJobs <= 0 {
		cfg.MaxConcurrentJobs = DefaultMaxConcurrentJobs
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = int(math.Max(1, math.Ceil(cfg.RateLimit)))
	}
	if cfg.KeyRateLimit == 0 {
		cfg.KeyRateLimit = cfg.RateLimit
	}
	if cfg.KeyRateBurst <= 0 {
		cfg.KeyRateBurst = int(math.Max(1, math.Ceil(cfg.KeyRateLimit)))
	}
	if cfg.AuthFailureRate == 0 {
		cfg.AuthFailureRate = DefaultAuthFailureRate
	}
	if cfg.AuthFailureBurst <= 0 {
		cfg.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if cfg.AuthFailureClients <= 0 {
		cfg.AuthFailureClients = DefaultAuthFailureClients
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.LogPollInterval <= 0 {
		cfg.LogPollInterval = DefaultLogPollInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, log: cfg.Logger, now: cfg.Now, perKey: map[string]*rate.Limiter{}}
	h.admission.h = h
	h.failures = newFailureLimiter(cfg.AuthFailureRate, cfg.AuthFailureBurst, cfg.AuthFailureClients)
	if cfg.RateLimit > 0 {
		h.global = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	if mh, ok := cfg.Metrics.(interface{ Handler() http.Handler }); ok {
		h.metrics = mh.Handler()
	}

	handlers := map[string]http.Handler{
		"POST /jobs":             h.authed(h.submit),
		"GET /jobs":              h.authed(h.list),
		"GET /jobs/{id}":         h.authed(h.get),
		"GET /jobs/{id}/logs":    h.authed(h.logs),
		"POST /jobs/{id}/cancel": h.authed(h.cancel),
		"GET /health":            http.HandlerFunc(h.health),
		"GET /metrics":           http.HandlerFunc(h.serveMetrics),
	}
	mux := http.NewServeMux()
	for _, pattern := range Routes() {
		mux.Handle(pattern, handlers[pattern])
		delete(handlers, pattern)
	}
	if len(handlers) != 0 {
		panic(fmt.Sprintf("api.New: handlers missing from Routes(): %v", handlers))
	}
	h.mux = mux
	return h
}

// Routes lists the served method+pattern pairs (docs/api.md is checked
// against it).
func Routes() []string {
	return []string{
		"POST /jobs", "GET /jobs", "GET /jobs/{id}", "GET /jobs/{id}/logs",
		"POST /jobs/{id}/cancel", "GET /health", "GET /metrics",
	}
}

// ServeHTTP recovers panics, writes the access log and turns the mux's
// plain-text 404/405 into JSON.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	sw := &statusWriter{ResponseWriter: w}
	info := &reqInfo{}
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			// The panic value may hold request data; log its type and the
			// stack (which holds no string contents), not the value.
			h.log.Error("panic in API handler", "method", r.Method, "path", r.URL.Path,
				"panic_type", fmt.Sprintf("%T", v), "stack", string(debug.Stack()))
			if !sw.wroteHeader {
				writeError(sw, http.StatusInternalServerError, "internal error", "")
			}
		}
		h.accessLog(r, sw, info, start)
	}()
	if _, pattern := h.mux.Handler(r); pattern == "" {
		h.notRouted(sw, r)
		return
	}
	h.mux.ServeHTTP(sw, r)
}

// notRouted answers a request no pattern matches: 404, or 405 with Allow
// when the path exists under another method.
func (h *handler) notRouted(w http.ResponseWriter, r *http.Request) {
	probe := &headerProbe{header: http.Header{}}
	h.mux.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		writeError(w, http.StatusMethodNotAllowed, "method not allowed", "")
		return
	}
	writeError(w, http.StatusNotFound, "not found", "")
}

func (h *handler) accessLog(r *http.Request, sw *statusWriter, info *reqInfo, start time.Time) {
	if !h.log.Enabled(r.Context(), slog.LevelInfo) {
		return // not even the attributes are built
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	attrs := []any{
		"method", r.Method,
		"path", r.URL.Path,
		"route", r.Pattern,
		"status", status,
		"bytes", sw.bytes,
		"duration_ms", float64(h.now().Sub(start).Microseconds()) / 1000,
	}
	if info.owner != "" {
		attrs = append(attrs, "key_owner", info.owner)
	}
	if info.jobID != "" {
		attrs = append(attrs, "job_id", info.jobID)
	}
	h.log.Info("http request", attrs...)
}

// authed authenticates the key, then applies the per-key and the global
// rate limits, before calling next with the key's principal (the owner of
// the jobs it submits); the whole identity (operator flag) is in the
// request's context (identityOf). A client address that has failed
// authentication too often is answered 429 before its key is looked up;
// failures spend neither limit that keyed clients share, so a flood of bad
// keys cannot lock valid keys out.
func (h *handler) authed(next func(w http.ResponseWriter, r *http.Request, owner string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := ""
		if h.failures != nil {
			addr = clientAddr(r)
			if blocked, wait := h.failures.blocked(addr, h.now()); blocked {
				w.Header().Set("Retry-After", retryAfter(wait))
				writeError(w, http.StatusTooManyRequests, "too many failed authentications; retry later", "")
				return
			}
		}
		secret := r.Header.Get(APIKeyHeader)
		var ident apikeys.Identity
		if secret != "" {
			var err error
			ident, err = h.cfg.Keys.Verify(r.Context(), secret)
			if err != nil && !errors.Is(err, apikeys.ErrInvalid) {
				h.log.Error("verify API key", "err", err)
				writeError(w, http.StatusServiceUnavailable, "service unavailable", "")
				return
			}
		}
		owner := ident.Principal
		if owner == "" {
			h.failures.fail(addr, h.now())
			writeError(w, http.StatusUnauthorized, "unauthorized", "")
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), identityKey{}, ident))
		if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
			info.owner = owner
		}
		// Per key first: a key over its own limit spends nothing of the
		// global one.
		if !h.allow(w, h.keyLimiter(owner)) || !h.allow(w, h.global) {
			return
		}
		next(w, r, owner)
	})
}

type identityKey struct{}

// identityOf is who made an authenticated request.
func identityOf(r *http.Request) apikeys.Identity {
	id, _ := r.Context().Value(identityKey{}).(apikeys.Identity)
	return id
}

func (h *handler) keyLimiter(owner string) *rate.Limiter {
	if h.cfg.KeyRateLimit < 0 {
		return nil
	}
	h.keyMu.Lock()
	defer h.keyMu.Unlock()
	l, ok := h.perKey[owner]
	if !ok {
		l = rate.NewLimiter(rate.Limit(h.cfg.KeyRateLimit), h.cfg.KeyRateBurst)
		h.perKey[owner] = l
	}
	return l
}

// allow takes a token from l or answers 429 with Retry-After.
func (h *handler) allow(w http.ResponseWriter, l *rate.Limiter) bool {
	if l == nil {
		return true
	}
	now := h.now()
	if l.AllowN(now, 1) {
		return true
	}
	wait := time.Second
	if res := l.ReserveN(now, 1); res.OK() {
		wait = res.DelayFrom(now)
		res.CancelAt(now)
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	writeError(w, http.StatusTooManyRequests, "rate limit exceeded; retry later", "")
	return false
}

// retryAfter renders d as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	resp := HealthResponse{Status: "ok", Store: "ok", Version: h.cfg.Version}
	code := http.StatusOK
	// Reading a job that cannot exist exercises the store end to end.
	if _, err := h.cfg.Store.Get(ctx, "health-check"); err != nil && !isNotFound(err) {
		h.log.Error("health: job store unreachable", "err", err)
		resp.Status, resp.Store = "unavailable", "unreachable"
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, resp)
}

func (h *handler) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if h.metrics == nil {
		writeError(w, http.StatusNotFound, "not found", "")
		return
	}
	h.metrics.ServeHTTP(w, r)
}

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}

// writeError writes the one error shape {"error": …, "field": …}.
func writeError(w http.ResponseWriter, code int, msg, field string) {
	writeJSON(w, code, ErrorResponse{Error: msg, Field: field})
}

// reqInfo collects what the access log reports about a request.
type reqInfo struct {
	owner string
	jobID string
}

type reqInfoKey struct{}

func setJobID(r *http.Request, id string) {
	if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		info.jobID = id
	}
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// headerProbe captures what the mux would answer for an unmatched request.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(code int)        { p.status = code }
