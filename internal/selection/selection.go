// Package selection decides which databases and tables are replicated and
// how: include/exclude lists, schema-only tables, row predicates and time
// windows, from CLI flags merged over a TOML rules file. It is pure: no I/O
// beyond reading the rules file.
package selection

// Rules is the parsed selection. The zero value selects everything.
type Rules struct{}
