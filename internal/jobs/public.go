package jobs

import (
	"net/netip"
	"regexp"
	"strings"
)

// PublicMessage renders a job's error (or a log line, or a history
// reason) for the key holder who submitted it. The full text stays in the
// job store and the worker's log under the job's trace id; what the API
// returns never shows:
//
//   - how a connection failed: refused, timed out, unreachable, a name
//     that does not resolve, or a port that answers but not as PostgreSQL
//     all read the same, so a job cannot be used to tell open ports from
//     closed ones or to learn what a name resolves to from the service;
//   - IP addresses (replaced by "[address]");
//   - absolute file paths of the service's machine (replaced by "[path]").
//
// Messages from a PostgreSQL server that was reached (SQLSTATE …), such as
// a wrong password, are kept apart from the two replacements: the key
// holder needs them to fix the job.
func PublicMessage(msg string) string {
	if msg == "" {
		return ""
	}
	// A log line's trace tag stays.
	if m := traceTag.FindString(msg); m != "" {
		return m + PublicMessage(msg[len(m):])
	}
	if role, ok := connectFailure(msg); ok {
		if role == "" {
			return "could not connect to the database server: no PostgreSQL server answered at that host and port. " +
				"Try: check the host and port in the URLs and that the server accepts connections from the job service"
		}
		return "could not connect to the " + role + " database server: no PostgreSQL server answered at that host and port. " +
			"Try: check the host and port in the " + role + " URL and that the server accepts connections from the job service"
	}
	msg = ipCandidate.ReplaceAllStringFunc(msg, maskIP)
	return absPath.ReplaceAllString(msg, "${1}[path]")
}

// traceTag is the "[TRACE:<trace id>] " that starts a job's log lines.
var traceTag = regexp.MustCompile(`^\[TRACE:[0-9A-Za-z-]*\] `)

// connectFailureMarkers are the texts of network-level connection failures
// (pg.Explain's phrases, pgconn's and the Go net package's).
var connectFailureMarkers = []string{
	"cannot reach the server",
	"host name not found",
	"connection refused",
	"dial error",
	"dial tcp",
	"i/o timeout",
	"no route to host",
	"network is unreachable",
	"host is unreachable",
	"no such host",
	"timeout: context deadline exceeded",
}

// roleWord finds which side a message is about (pg.Explain starts with it).
var roleWord = regexp.MustCompile(`\b(source|target)\b`)

func connectFailure(msg string) (role string, ok bool) {
	lower := strings.ToLower(msg)
	if strings.Contains(lower, "sqlstate") {
		return "", false // the server answered
	}
	hit := strings.Contains(lower, "failed to connect to") || // pgconn
		(strings.Contains(lower, "connection to server") && strings.Contains(lower, "failed")) || // libpq (pg_dump)
		strings.Contains(lower, ": timed out:") // pg.Explain's connect timeout
	for _, m := range connectFailureMarkers {
		if hit {
			break
		}
		hit = strings.Contains(lower, m)
	}
	if !hit {
		return "", false
	}
	if m := roleWord.FindStringSubmatch(lower); m != nil {
		role = m[1]
	}
	return role, true
}

// ipCandidate matches runs that may be an IP address, optionally in
// brackets and with a port; maskIP keeps only those that parse.
var ipCandidate = regexp.MustCompile(`\[?[0-9A-Fa-f]*[.:][0-9A-Fa-f.:]*[0-9A-Fa-f](?:%[0-9A-Za-z]+)?\]?(?::[0-9]+)?`)

func maskIP(s string) string {
	if _, err := netip.ParseAddrPort(s); err == nil {
		return "[address]"
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil && (a.Is4() || strings.Count(s, ":") >= 2) {
		return "[address]"
	}
	return s
}

// absPath matches an absolute path: a slash that starts a word, then at
// least one name.
var absPath = regexp.MustCompile(`(^|[\s"'=(\[,])/[A-Za-z0-9._~+@-]+(?:/[A-Za-z0-9._~+@-]*)*`)
