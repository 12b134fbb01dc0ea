// Package pg owns everything about talking to a PostgreSQL server that is
// not replication logic: parsing and redacting connection URLs, opening
// connections with clear, hinted errors, passing credentials to child tools
// (pg_dump, pg_restore, psql) through their environment only, quoting, and
// version probes.
package pg
