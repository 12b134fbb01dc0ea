package schema

import (
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// listQuoteGUCs are the settings whose value is a list of names, stored in
// pg_db_role_setting as `a, "B c"` (PostgreSQL's GUC_LIST_QUOTE; the same
// list pg_dump keeps in variable_is_guc_list_quote). Their value must be
// re-issued as a list of literals: quoted as one literal, search_path =
// app, public would become a single schema named "app, public".
var listQuoteGUCs = map[string]bool{
	"local_preload_libraries":   true,
	"search_path":               true,
	"session_preload_libraries": true,
	"shared_preload_libraries":  true,
	"temp_tablespaces":          true,
	"unix_socket_directories":   true,
}

// setClause turns one pg_db_role_setting entry ("name=value") into the
// `name TO value` of ALTER DATABASE/ROLE … SET, as pg_dump does.
func setClause(kv string) (string, bool) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return "", false
	}
	if !listQuoteGUCs[strings.ToLower(k)] {
		return pg.Ident(k) + " TO " + pg.Literal(v), true
	}
	items := splitGUCList(v)
	if len(items) == 0 {
		return pg.Ident(k) + " TO ''", true
	}
	lits := make([]string, len(items))
	for i, it := range items {
		lits[i] = pg.Literal(it)
	}
	return pg.Ident(k) + " TO " + strings.Join(lits, ", "), true
}

// splitGUCList splits a list setting's stored value at commas outside
// double quotes, removing the quotes (and undoubling "" inside them) and
// the blanks around each item, like PostgreSQL's SplitGUCList.
func splitGUCList(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, quoted := false, false
	flush := func() {
		item := cur.String()
		if !quoted {
			item = strings.TrimSpace(item)
		}
		if item != "" || quoted {
			out = append(out, item)
		}
		cur.Reset()
		quoted = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '"' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"':
			inQuote = !inQuote
			if inQuote {
				cur.Reset() // blanks before the opening quote
				quoted = true
			}
		case !inQuote && c == ',':
			flush()
		case !inQuote && quoted && (c == ' ' || c == '\t'):
			// blanks after the closing quote
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}
