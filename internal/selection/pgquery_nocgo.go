//go:build !cgo

package selection

import (
	pgq "github.com/pganalyze/pg_query_go/v6"
	wasm "github.com/wasilibs/go-pgquery"
)

// Without cgo (the CGO_ENABLED=0 Lambda builds), the same parser
// (libpg_query) runs compiled to WebAssembly.

func pgParse(sql string) (*pgq.ParseResult, error) { return wasm.Parse(sql) }

func pgDeparse(tree *pgq.ParseResult) (string, error) { return wasm.Deparse(tree) }
