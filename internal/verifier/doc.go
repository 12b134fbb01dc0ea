// Package verifier compares the selected tables of a source and a target
// server, table by table, without moving rows to the client.
//
// Every comparison is a server-side aggregate: the row count and the sum of
// a 64-bit hash of each row's text form (md5 of ROW(columns…)::text, first
// 16 hex digits), summed as numeric. A sum is order-independent and counts
// duplicates, so the same multiset of rows gives the same pair on both
// sides whatever the physical order. Tables with a primary key are split
// into key ranges (min/max for a single integer key, quantiles of a
// TABLESAMPLE otherwise) hashed in parallel; a range that differs is
// bisected, inside the same snapshots, down to a few rows, which are then
// compared one by one to name the keys that differ. Tables without a key
// are hashed whole. Client memory does not depend on table size.
//
// Each side's reads for a range run in a REPEATABLE READ READ ONLY
// transaction. When a subscription on the target replicates from the
// source, Verify first waits until the subscriber has confirmed the
// source's current WAL position, and re-checks ranges that differ after
// another catch-up (writes may still be running) before reporting them.
package verifier
