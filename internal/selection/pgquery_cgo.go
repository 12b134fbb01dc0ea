//go:build cgo

package selection

import pgq "github.com/pganalyze/pg_query_go/v6"

// With cgo, PostgreSQL's parser (libpg_query) is linked in directly.

func pgParse(sql string) (*pgq.ParseResult, error) { return pgq.Parse(sql) }

func pgDeparse(tree *pgq.ParseResult) (string, error) { return pgq.Deparse(tree) }
