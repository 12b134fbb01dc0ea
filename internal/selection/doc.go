// Package selection decides which databases and tables are replicated and
// how: include/exclude lists, schema-only tables, row predicates and time
// windows, from CLI flags merged over a TOML rules file. It is pure: no I/O
// beyond reading the rules file, no database access.
//
// # Names
//
// A table is written "db.table" (schema public), "db.schema.table", or a
// bare "table" meaning that public table in every replicated database
// ("*.schema.table" does the same for another schema). Names are matched
// exactly as the catalog stores them (no case folding); a part containing
// a dot, a colon or a double quote is double-quoted: "db"."my.table".
//
// A table filter is "[db.]table:SQL predicate" (split at the first colon
// outside double quotes); a time filter is "[db.]table:column:window" with
// a window such as "6 months", "1 year", "90d", "6mo" or "12h". A time
// filter becomes `"column" >= pg_catalog.now() - interval '6 months'`.
//
// A predicate is parsed by PostgreSQL's own parser (libpg_query: linked in
// with cgo, compiled to WebAssembly without), must be exactly one
// expression of a small side-effect-free grammar (columns of the table,
// constants, operators, boolean logic, CASE, casts to plain types, IN,
// BETWEEN, LIKE, IS [NOT] NULL and allow-listed date/time, text and math
// functions; see predicate.go and docs/selection.md), and is re-emitted
// from the parse tree: the text stored in the rules, shown in summaries
// and run on the server is the checked tree, never the typed text.
// Sessions that run a predicate first run SessionSetup in their
// transaction.
//
// # Decisions
//
// Databases: include-databases selects only those; exclude-databases all
// but those; template0 and template1 are never replicated. Without
// include-databases, include-tables entries that all name a database also
// select the databases: only those databases are replicated.
//
// Tables: exclude-tables leaves the named tables out. When include-tables
// entries apply to a database, only the tables they (or schema-only
// entries) name are copied there; other databases keep all their tables.
// Schema-only tables are created without rows. Every table and time filter
// naming a table is ANDed into its predicate, each in parentheses.
//
// include-X and exclude-X of one kind are mutually exclusive, whether they
// come from flags, the rules file, or one from each; for tables, per
// database: an include-tables and an exclude-tables entry may not apply to
// the same database (one database may use an include list and another an
// exclude list). A table rule typed on
// the command line for a database that is not replicated is an error (it
// would silently do nothing).
//
// # Rules file and merge
//
// --config names a TOML file (format in docs/selection.md). Unknown keys
// are errors. Command-line flags are merged on top of it:
//
//   - --include-databases replaces the file's database selection
//     (include_databases and exclude_databases) entirely;
//   - --exclude-databases is added to the file's exclude_databases (and is
//     an error if the file has include_databases);
//   - every table list and filter from flags is added to the file's;
//     duplicates are dropped.
//
// Rules.Flags turns merged rules back into flag form (rules file inlined),
// which is what a remote job request carries.
//
// Every error names the flag (or the rules-file key) and the offending
// value, e.g.
//
//	--time-filter "events:created_at:6 fortnights": unknown unit "fortnights" (use seconds, minutes, hours, days, weeks, months or years)
package selection
