package selection

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// tableRef names one table. db == "" means "this table in every selected
// database" (written as a bare name or with the "*" database).
type tableRef struct {
	db, schema, table string
}

func (t tableRef) key() string { return t.db + "\x00" + t.schema + "\x00" + t.table }

// appliesTo reports whether the ref can match tables of database db.
func (t tableRef) appliesTo(db string) bool { return t.db == "" || t.db == db }

func (t tableRef) matches(db, schema, table string) bool {
	return t.appliesTo(db) && t.schema == schema && t.table == table
}

// String is the ref in flag syntax: "table", "*.schema.table", "db.table"
// or "db.schema.table", quoting parts that need it.
func (t tableRef) String() string {
	tbl := quoteName(t.table)
	switch {
	case t.db == "" && t.schema == "public":
		return tbl
	case t.db == "":
		return "*." + quoteName(t.schema) + "." + tbl
	case t.schema == "public":
		return quoteName(t.db) + "." + tbl
	default:
		return quoteName(t.db) + "." + quoteName(t.schema) + "." + tbl
	}
}

// human is the ref for log lines.
func (t tableRef) human() string {
	if t.db == "" {
		return t.String() + " (every database)"
	}
	return t.String()
}

// quoteName double-quotes a name part when the flag syntax would otherwise
// misread it.
func quoteName(s string) string {
	if s == "" || s == "*" || strings.ContainsAny(s, `.:"`) || strings.TrimSpace(s) != s {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// namePart is one dot-separated part of a name.
type namePart struct {
	s      string
	quoted bool
}

// scanName reads dot-separated name parts from s. Parts may be
// double-quoted ("my.table", with "" for a literal quote); unquoted parts
// are taken verbatim (no case folding) with surrounding spaces trimmed.
// With stopAtColon it stops at the first ':' outside quotes and returns
// what follows it as rest (colon reports whether one was found).
func scanName(s string, stopAtColon bool) (parts []namePart, rest string, colon bool, err error) {
	i := 0
	for {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var p namePart
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, "", false, errors.New("unterminated quoted name")
			}
			if b.Len() == 0 {
				return nil, "", false, errors.New(`empty quoted name ""`)
			}
			p = namePart{s: b.String(), quoted: true}
			for i < len(s) && s[i] == ' ' {
				i++
			}
		} else {
			j := i
			for j < len(s) && s[j] != '.' && s[j] != '"' && !(stopAtColon && s[j] == ':') {
				j++
			}
			if j < len(s) && s[j] == '"' {
				return nil, "", false, errors.New(`a quote may only wrap a whole name part, as in "db"."my.table"`)
			}
			text := strings.TrimSpace(s[i:j])
			if text == "" {
				return nil, "", false, errors.New("empty name (check the dots)")
			}
			p = namePart{s: text}
			i = j
		}
		parts = append(parts, p)
		if i == len(s) {
			return parts, "", false, nil
		}
		switch {
		case s[i] == '.':
			i++
		case stopAtColon && s[i] == ':':
			return parts, s[i+1:], true, nil
		default:
			return nil, "", false, fmt.Errorf("unexpected %q after a quoted name", s[i])
		}
	}
}

const refSyntax = `use db.table or db.schema.table; quote names that contain dots, as in "db"."my.table"`

// refFromParts turns 1-3 parts into a ref: "table" (every database,
// schema public), "db.table" or "db.schema.table". An unquoted "*" as the
// database means every database.
func refFromParts(parts []namePart) (tableRef, error) {
	for i, p := range parts {
		if p.s == "*" && !p.quoted && !(i == 0 && len(parts) > 1) {
			return tableRef{}, errors.New(`"*" stands only for the database ("*.schema.table"); list tables one by one`)
		}
	}
	db := func(p namePart) string {
		if p.s == "*" && !p.quoted {
			return ""
		}
		return p.s
	}
	switch len(parts) {
	case 1:
		return tableRef{schema: "public", table: parts[0].s}, nil
	case 2:
		return tableRef{db: db(parts[0]), schema: "public", table: parts[1].s}, nil
	case 3:
		return tableRef{db: db(parts[0]), schema: parts[1].s, table: parts[2].s}, nil
	default:
		return tableRef{}, errors.New("too many dots: " + refSyntax)
	}
}

// parseRef parses a flag-syntax table name.
func parseRef(s string) (tableRef, error) {
	parts, _, _, err := scanName(strings.TrimSpace(s), false)
	if err != nil {
		return tableRef{}, err
	}
	return refFromParts(parts)
}

// parseLocalRef parses "table" or "schema.table" inside a rules-file
// database section.
func parseLocalRef(db, s string) (tableRef, error) {
	parts, _, _, err := scanName(strings.TrimSpace(s), false)
	if err != nil {
		return tableRef{}, err
	}
	for _, p := range parts {
		if p.s == "*" && !p.quoted {
			return tableRef{}, errors.New(`"*" is not a table name; list tables one by one`)
		}
	}
	switch len(parts) {
	case 1:
		return tableRef{db: db, schema: "public", table: parts[0].s}, nil
	case 2:
		return tableRef{db: db, schema: parts[0].s, table: parts[1].s}, nil
	default:
		return tableRef{}, errors.New(`too many dots: inside [databases.NAME] use table or schema.table; quote names that contain dots, as in "my.table"`)
	}
}

// parseColumn parses one (optionally quoted) column name.
func parseColumn(s string) (string, error) {
	parts, _, _, err := scanName(strings.TrimSpace(s), false)
	if err != nil {
		return "", fmt.Errorf("column: %w", err)
	}
	if len(parts) != 1 {
		return "", errors.New(`the column must be one name; quote it if it contains dots, as in "my.col"`)
	}
	return parts[0].s, nil
}

// splitFilter splits "[db.]table:rest" at the first ':' outside quotes.
func splitFilter(s, syntax string) (tableRef, string, error) {
	parts, rest, colon, err := scanName(strings.TrimSpace(s), true)
	if err != nil {
		return tableRef{}, "", err
	}
	if !colon {
		return tableRef{}, "", fmt.Errorf("missing ':' (expected %s)", syntax)
	}
	ref, err := refFromParts(parts)
	return ref, rest, err
}

const (
	tableFilterSyntax = `"[db.]table:SQL predicate", e.g. "app.orders:status <> 'archived'"`
	timeFilterSyntax  = `"[db.]table:column:window", e.g. "app.events:created_at:6 months"`
)

// parseTableFilter parses "[db.]table:SQL predicate".
func parseTableFilter(s string) (tableRef, string, error) {
	ref, pred, err := splitFilter(s, tableFilterSyntax)
	if err != nil {
		return tableRef{}, "", err
	}
	pred, err = checkPredicate(pred)
	if err != nil {
		return tableRef{}, "", err
	}
	return ref, pred, nil
}

// parseTimeFilter parses "[db.]table:column:window".
func parseTimeFilter(s string) (tableRef, string, window, error) {
	ref, rest, err := splitFilter(s, timeFilterSyntax)
	if err != nil {
		return tableRef{}, "", window{}, err
	}
	parts, win, colon, err := scanName(strings.TrimSpace(rest), true)
	if err != nil {
		return tableRef{}, "", window{}, fmt.Errorf("column: %w", err)
	}
	if !colon {
		return tableRef{}, "", window{}, fmt.Errorf("missing the column or the window (expected %s)", timeFilterSyntax)
	}
	if len(parts) != 1 {
		return tableRef{}, "", window{}, errors.New(`the column must be one name; quote it if it contains dots, as in "my.col"`)
	}
	w, err := parseWindow(win)
	if err != nil {
		return tableRef{}, "", window{}, err
	}
	return ref, parts[0].s, w, nil
}

// window is a positive whole number of calendar units, e.g. 6 months.
type window struct {
	n    int
	unit string // singular: second, minute, hour, day, week, month, year
}

func (w window) String() string {
	if w.n == 1 {
		return "1 " + w.unit
	}
	return strconv.Itoa(w.n) + " " + w.unit + "s"
}

const (
	maxWindow = 1_000_000
	unitList  = "seconds, minutes, hours, days, weeks, months or years"
)

// unitName maps a unit spelling to its singular name.
func unitName(u string) (string, bool) {
	switch u {
	case "s", "sec", "secs", "second", "seconds":
		return "second", true
	case "min", "mins", "minute", "minutes":
		return "minute", true
	case "h", "hr", "hrs", "hour", "hours":
		return "hour", true
	case "d", "day", "days":
		return "day", true
	case "w", "wk", "wks", "week", "weeks":
		return "week", true
	case "mo", "mon", "mons", "month", "months":
		return "month", true
	case "y", "yr", "yrs", "year", "years":
		return "year", true
	}
	return "", false
}

// parseWindow parses "6 months", "1 year", "90d", "6mo", "12h" and the like.
func parseWindow(s string) (window, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return window{}, fmt.Errorf(`missing window, e.g. "6 months"`)
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return window{}, fmt.Errorf(`the window must be a positive whole number and a unit, e.g. "6 months"`)
	}
	if i < len(s) && (s[i] == '.' || s[i] == ',') {
		return window{}, fmt.Errorf(`the window must be a whole number of units (write "36 hours", not "1.5 days")`)
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil || n > maxWindow {
		return window{}, fmt.Errorf("the window %s is too large (at most %d)", s[:i], maxWindow)
	}
	if n == 0 {
		return window{}, fmt.Errorf("the window must be positive")
	}
	u := strings.ToLower(strings.TrimSpace(s[i:]))
	if u == "" {
		return window{}, fmt.Errorf("missing unit after %s (use %s)", s[:i], unitList)
	}
	if u == "m" {
		return window{}, fmt.Errorf(`ambiguous unit "m" (use "min" for minutes or "mo" for months)`)
	}
	unit, ok := unitName(u)
	if !ok {
		return window{}, fmt.Errorf("unknown unit %q (use %s)", strings.TrimSpace(s[i:]), unitList)
	}
	return window{n: n, unit: unit}, nil
}

// timePredicate is the SQL for "column is within the last w".
func timePredicate(column string, w window) string {
	return pgx.Identifier{column}.Sanitize() + " >= pg_catalog.now() - interval '" + w.String() + "'"
}
