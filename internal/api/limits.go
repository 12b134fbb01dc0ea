package api

import (
	"net"
	"net/http"
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Defaults of the failed-authentication limit per client address.
const (
	// DefaultAuthFailureRate is failed authentications per second a client
	// address may sustain (one a second), after DefaultAuthFailureBurst.
	DefaultAuthFailureRate  = 1.0
	DefaultAuthFailureBurst = 30
	// DefaultAuthFailureClients is how many client addresses are tracked;
	// the least recently failing are forgotten first.
	DefaultAuthFailureClients = 10000
)

// failureLimiter limits failed authentications per client address. An
// address that has used up its allowance is answered 429 before its key is
// even looked up, so a flood of bad keys costs the service little and
// spends nothing of the limits that keyed clients share. Only failures
// spend the allowance: a client with a valid key is never slowed by it
// unless its own address is flooding.
type failureLimiter struct {
	limit rate.Limit
	burst int
	addrs *lru.Cache[string, *rate.Limiter]
}

func newFailureLimiter(perSecond float64, burst, clients int) *failureLimiter {
	if perSecond < 0 {
		return nil
	}
	c, err := lru.New[string, *rate.Limiter](clients)
	if err != nil { // only for a size < 1, which New never passes
		return nil
	}
	return &failureLimiter{limit: rate.Limit(perSecond), burst: burst, addrs: c}
}

// blocked reports whether addr has no failure left, and when it will.
func (f *failureLimiter) blocked(addr string, now time.Time) (bool, time.Duration) {
	if f == nil || addr == "" {
		return false, 0
	}
	l, ok := f.addrs.Peek(addr)
	if !ok || l.TokensAt(now) >= 1 {
		return false, 0
	}
	wait := time.Second
	if res := l.ReserveN(now, 1); res.OK() {
		wait = res.DelayFrom(now)
		res.CancelAt(now)
	}
	return true, wait
}

// fail records one failed authentication from addr.
func (f *failureLimiter) fail(addr string, now time.Time) {
	if f == nil || addr == "" {
		return
	}
	l, ok := f.addrs.Get(addr)
	if !ok {
		var prev *rate.Limiter
		l = rate.NewLimiter(f.limit, f.burst)
		if prev, ok, _ = f.addrs.PeekOrAdd(addr, l); ok {
			l = prev // another request added it first
		}
	}
	l.AllowN(now, 1)
}

// clientAddr is the address failed authentications are counted against:
// the peer's IP (behind API Gateway, the awslambda adapter sets RemoteAddr
// from the request context's source IP), with IPv6 addresses reduced to
// their /64, the block one subscriber usually holds. Forwarding headers
// are not trusted: serve is reached directly.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}
