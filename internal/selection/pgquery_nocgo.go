//go:build !cgo

package selection

import (
	"fmt"

	pgq "github.com/pganalyze/pg_query_go/v6"
	wasm "github.com/wasilibs/go-pgquery"
)

// Without cgo (the CGO_ENABLED=0 Lambda and worker builds), the same
// parser (libpg_query) runs compiled to WebAssembly. A trap inside it (it
// should not happen: checkPredicate bounds the input) is a panic there;
// here it is an error.

func pgParse(sql string) (tree *pgq.ParseResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			tree, err = nil, fmt.Errorf("parser failed: %v", r)
		}
	}()
	return wasm.Parse(sql)
}

func pgDeparse(tree *pgq.ParseResult) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("deparser failed: %v", r)
		}
	}()
	return wasm.Deparse(tree)
}
