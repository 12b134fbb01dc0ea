package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// MaxRequestBytes is the largest submit body accepted (15 KB).
const MaxRequestBytes = 15 * 1024

// Limits on options.
const (
	MinJobTimeoutSeconds = 60
	MaxJobTimeoutSeconds = 7 * 24 * 60 * 60 // one week
)

// Request is a job submission (POST /jobs), schema version 1.0. Its JSON
// form is the wire format; it holds credentials in clear, so it is never
// stored or logged as is: String and LogValue redact it, Spec drops the
// URLs and Credentials hands them to the keeper for sealing.
type Request struct {
	SchemaVersion string  `json:"schema_version"`
	Command       Command `json:"command"`
	SourceURL     string  `json:"source_url"`
	TargetURL     string  `json:"target_url"`
	Filter        Filter  `json:"filter"`
	Options       Options `json:"options"`
}

// Spec is what the job runs, without credentials.
func (r Request) Spec() Spec {
	return Spec{Command: r.Command, Filter: r.Filter, Options: r.Options}
}

// Credentials returns the URLs to seal.
func (r Request) Credentials() Credentials {
	return Credentials{SourceURL: r.SourceURL, TargetURL: r.TargetURL}
}

// String describes r with passwords redacted.
func (r Request) String() string {
	return fmt.Sprintf("%s job from %s to %s", r.Command, redactURL(r.SourceURL), redactURL(r.TargetURL))
}

// LogValue keeps passwords out of slog output.
func (r Request) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("command", string(r.Command)),
		slog.String("source", redactURL(r.SourceURL)),
		slog.String("target", redactURL(r.TargetURL)),
	)
}

func redactURL(s string) string {
	u, err := pg.ParseURL(s)
	if err != nil {
		return "(invalid URL)"
	}
	return u.String()
}

// ValidationError is why a request was rejected; Field is the JSON path of
// the offending field ("options.job_timeout"), or "body" for the request as
// a whole. Messages never contain a URL's password.
type ValidationError struct {
	Field   string `json:"field"`
	Message string `json:"error"`
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, a ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, a...)}
}

// shape describes the object keys a request may contain; a nil shape is a
// leaf whose type the struct decoder checks.
type shape map[string]shape

var requestShape = shape{
	"schema_version": nil,
	"command":        nil,
	"source_url":     nil,
	"target_url":     nil,
	"filter": {
		"include_databases":  nil,
		"exclude_databases":  nil,
		"include_tables":     nil,
		"exclude_tables":     nil,
		"schema_only_tables": nil,
		"table_filters":      nil,
		"time_filters":       nil,
	},
	"options": {
		"drop_existing":        nil,
		"enable_sync":          nil,
		"no_sync":              nil,
		"estimated_size_bytes": nil,
		"job_timeout":          nil,
		"yes":                  nil,
	},
}

// expected names the JSON type of each field, for wrong-type messages.
var expected = map[string]string{
	"":                             "a JSON object",
	"schema_version":               `the string "1.0"`,
	"command":                      "a string",
	"source_url":                   "a string",
	"target_url":                   "a string",
	"filter":                       "an object",
	"filter.include_databases":     "an array of strings",
	"filter.exclude_databases":     "an array of strings",
	"filter.include_tables":        "an array of strings",
	"filter.exclude_tables":        "an array of strings",
	"filter.schema_only_tables":    "an array of strings",
	"filter.table_filters":         "an array of strings",
	"filter.time_filters":          "an array of strings",
	"options":                      "an object",
	"options.drop_existing":        "true or false",
	"options.enable_sync":          "true or false",
	"options.no_sync":              "true or false",
	"options.estimated_size_bytes": "a whole number of bytes",
	"options.job_timeout":          "a whole number of seconds",
	"options.yes":                  "true or false",
}

// DecodeRequest reads and validates a submit request of at most limit
// bytes (MaxRequestBytes when limit <= 0). The JSON is strict: unknown or
// duplicate fields (matched case-sensitively, also inside filter and
// options), wrong types and trailing data are rejected. Every error is a
// *ValidationError naming the field.
func DecodeRequest(r io.Reader, limit int64) (Request, error) {
	if limit <= 0 {
		limit = MaxRequestBytes
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return Request{}, invalid("body", "could not read the request body")
	}
	if int64(len(body)) > limit {
		return Request{}, invalid("body", "request body is larger than %d bytes", limit)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return Request{}, invalid("body", "request body is empty; expected a JSON object")
	}
	present, verr := checkKeys(body)
	if verr != nil {
		return Request{}, verr
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, decodeError(err)
	}
	req.Filter = normalizeFilter(req.Filter)
	// options.yes comes from v3 clients; a job never prompts, so it is
	// accepted (type-checked) and not kept in the stored spec.
	req.Options.Yes = nil
	if verr := req.validate(present); verr != nil {
		return Request{}, verr
	}
	return req, nil
}

// decodeError turns an encoding/json error into a ValidationError without
// echoing values.
func decodeError(err error) *ValidationError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		want, ok := expected[field]
		if !ok {
			want = "a different type"
		}
		if field == "" {
			field = "body"
		}
		return invalid(field, "must be %s", want)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("body", "invalid JSON at byte %d", se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return invalid("body", "invalid JSON: unexpected end of input")
	}
	return invalid("body", "invalid JSON")
}

// checkKeys walks the JSON tokens and rejects unknown and duplicate keys
// (case-sensitively, unlike encoding/json), a non-object body and trailing
// data. It returns the set of field paths present.
func checkKeys(body []byte) (map[string]bool, *ValidationError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, decodeError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, invalid("body", "must be a JSON object")
	}
	present := map[string]bool{}
	if verr := walkObject(dec, requestShape, "", present); verr != nil {
		return nil, verr
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("body", "unexpected data after the JSON object")
	}
	return present, nil
}

// walkObject consumes an object whose '{' has been read.
func walkObject(dec *json.Decoder, s shape, prefix string, present map[string]bool) *ValidationError {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return decodeError(err)
		}
		key, ok := tok.(string)
		if !ok {
			return invalid("body", "invalid JSON: object key is not a string")
		}
		path := prefix + key
		if key == "" {
			path = prefix + `""`
		}
		sub, known := s[key]
		if !known {
			return invalid(path, "unknown field")
		}
		if seen[key] {
			return invalid(path, "duplicate field")
		}
		seen[key] = true
		present[path] = true
		tok, err = dec.Token()
		if err != nil {
			return decodeError(err)
		}
		if d, ok := tok.(json.Delim); ok && d == '{' && sub != nil {
			if verr := walkObject(dec, sub, path+".", present); verr != nil {
				return verr
			}
			continue
		}
		if verr := skipValue(dec, tok); verr != nil {
			return verr
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return decodeError(err)
	}
	return nil
}

// skipValue consumes the rest of a value whose first token is first.
func skipValue(dec *json.Decoder, first json.Token) *ValidationError {
	d, ok := first.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return decodeError(err)
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
	}
	return nil
}

func normalizeFilter(f Filter) Filter {
	for _, l := range []*[]string{&f.IncludeDatabases, &f.ExcludeDatabases, &f.IncludeTables,
		&f.ExcludeTables, &f.SchemaOnlyTables, &f.TableFilters, &f.TimeFilters} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return f
}

func (r *Request) validate(present map[string]bool) *ValidationError {
	switch {
	case r.SchemaVersion == "":
		return invalid("schema_version", `is required (use "%s")`, SchemaVersion)
	case r.SchemaVersion != SchemaVersion:
		return invalid("schema_version", `is not supported (use "%s")`, SchemaVersion)
	}
	if r.Command == "" {
		return invalid("command", "is required (one of %s)", commandList())
	}
	if !validCommand(r.Command) {
		return invalid("command", "must be one of %s", commandList())
	}
	if verr := checkURL("source_url", r.SourceURL); verr != nil {
		return verr
	}
	if verr := checkURL("target_url", r.TargetURL); verr != nil {
		return verr
	}
	if verr := checkFilter(r.Filter); verr != nil {
		return verr
	}
	o := r.Options
	if present["options.job_timeout"] && (o.JobTimeout < MinJobTimeoutSeconds || o.JobTimeout > MaxJobTimeoutSeconds) {
		return invalid("options.job_timeout", "must be between %d and %d seconds", MinJobTimeoutSeconds, MaxJobTimeoutSeconds)
	}
	if o.EstimatedSizeBytes < 0 {
		return invalid("options.estimated_size_bytes", "must not be negative")
	}
	if o.NoSync && o.EnableSync != nil && *o.EnableSync {
		return invalid("options.no_sync", "contradicts options.enable_sync; send only one of them")
	}
	return nil
}

func validCommand(c Command) bool {
	for _, k := range Commands {
		if c == k {
			return true
		}
	}
	return false
}

func commandList() string {
	s := make([]string, len(Commands))
	for i, c := range Commands {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// checkURL validates a connection URL without ever putting any part of it
// in the message.
func checkURL(field, s string) *ValidationError {
	if s == "" {
		return invalid(field, "is required (a postgres:// URL)")
	}
	if len(s) > pg.MaxURLLength {
		return invalid(field, "is %d characters; the limit is %d", len(s), pg.MaxURLLength)
	}
	lower := strings.ToLower(s)
	if !strings.HasPrefix(lower, "postgres://") && !strings.HasPrefix(lower, "postgresql://") {
		return invalid(field, "must be a postgres:// or postgresql:// URL")
	}
	// The job service's connection policy (pg.ParseUntrusted): allowed
	// parameters only, one TCP host, no address literal outside the
	// operator's networks (SEREN_ALLOW_NETWORKS). Names are checked again
	// when the worker dials.
	policy, err := pg.NetPolicyFromEnv()
	if err != nil {
		return invalid(field, "cannot be checked: the service's network policy is misconfigured")
	}
	if _, err := pg.ParseUntrusted(s, policy); err != nil {
		// pg's messages do not echo the URL; redact anyway in case a
		// future message does.
		return invalid(field, "%s", scrub(err.Error(), s))
	}
	return nil
}

// scrub removes any password found in raw from msg.
func scrub(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return msg
	}
	var pw []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			pw = append(pw, p)
		}
	}
	if p := u.Query().Get("password"); p != "" {
		pw = append(pw, p)
	}
	for _, p := range pw {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}

// filterFlags maps the selection package's flag names, which its errors
// use, to the request's field paths.
var filterFlags = []struct{ flag, field string }{
	{"--include-databases", "filter.include_databases"},
	{"--exclude-databases", "filter.exclude_databases"},
	{"--include-tables", "filter.include_tables"},
	{"--exclude-tables", "filter.exclude_tables"},
	{"--schema-only-tables", "filter.schema_only_tables"},
	{"--table-filter", "filter.table_filters"},
	{"--time-filter", "filter.time_filters"},
}

// checkFilter validates the filter with the selection package, the same
// rules as the CLI flags; the error names the list at fault.
func checkFilter(f Filter) *ValidationError {
	for _, l := range []struct {
		field string
		vals  []string
	}{
		{"filter.include_databases", f.IncludeDatabases}, {"filter.exclude_databases", f.ExcludeDatabases},
		{"filter.include_tables", f.IncludeTables}, {"filter.exclude_tables", f.ExcludeTables},
		{"filter.schema_only_tables", f.SchemaOnlyTables}, {"filter.table_filters", f.TableFilters},
		{"filter.time_filters", f.TimeFilters},
	} {
		for _, v := range l.vals {
			if strings.TrimSpace(v) == "" {
				return invalid(l.field, "must not contain empty strings")
			}
		}
	}
	// Each row filter alone first, so the error names the one at fault:
	// filter.table_filters[1]. The same check as the CLI's (PostgreSQL's
	// parser and the predicate grammar).
	for _, l := range []struct {
		field, flag string
		vals        []string
		flags       func(string) selection.Flags
	}{
		{"filter.table_filters", "--table-filter", f.TableFilters, func(v string) selection.Flags { return selection.Flags{TableFilters: []string{v}} }},
		{"filter.time_filters", "--time-filter", f.TimeFilters, func(v string) selection.Flags { return selection.Flags{TimeFilters: []string{v}} }},
	} {
		for i, v := range l.vals {
			if _, err := selection.Build(l.flags(v)); err != nil {
				msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("%s %q: ", l.flag, v))
				return invalid(fmt.Sprintf("%s[%d]", l.field, i), "%s", msg)
			}
		}
	}
	_, err := selection.Build(FilterFlags(f))
	if err == nil {
		return nil
	}
	msg, field := err.Error(), "filter"
	first := len(msg) + 1
	for _, m := range filterFlags {
		if i := strings.Index(msg, m.flag); i >= 0 && i < first {
			first, field = i, m.field
		}
	}
	for _, m := range filterFlags {
		msg = strings.ReplaceAll(msg, m.flag, m.field)
	}
	if strings.HasPrefix(msg, field) {
		msg = strings.TrimLeft(strings.TrimPrefix(msg, field), " :")
	}
	return invalid(field, "%s", msg)
}

// FilterFlags converts a job filter to selection flags (no rules file: a
// job never reads files named by its submitter).
func FilterFlags(f Filter) selection.Flags {
	return selection.Flags{
		IncludeDatabases: f.IncludeDatabases,
		ExcludeDatabases: f.ExcludeDatabases,
		IncludeTables:    f.IncludeTables,
		ExcludeTables:    f.ExcludeTables,
		SchemaOnlyTables: f.SchemaOnlyTables,
		TableFilters:     f.TableFilters,
		TimeFilters:      f.TimeFilters,
	}
}
