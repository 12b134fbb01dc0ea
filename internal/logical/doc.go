// Package logical owns continuous sync by PostgreSQL logical replication:
// the publication, the logical slot (with its exported snapshot) and the
// subscription of each database, their names, their status and lag, the
// wait for zero lag, sequence values at cutover, teardown, and the checks
// (Validate) that say what would make replication fail or lose data.
//
// # Order of creation
//
// For one database, the objects must be created in this order:
//
//  1. CreatePublication on the source database;
//  2. CreateSlot on the source database, which exports a snapshot;
//  3. the copy, in transactions that SET TRANSACTION SNAPSHOT to it, while
//     the slot's replication connection stays open and idle;
//  4. Slot.Close, then CreateSubscription on the target database with
//     create_slot = false, copy_data = false and slot_name = the slot.
//
// Every change committed before the snapshot arrives by the copy, every
// later one by replication from the slot's consistent point, each exactly
// once. The publication comes first because pgoutput reads publications
// through the historic catalog snapshot of the WAL it decodes: a
// publication created after the slot does not exist at the slot's start
// and decoding fails with "publication ... does not exist". CreateSlot
// enforces this: it refuses to create a slot unless the publication of the
// same name (see Names) already exists.
//
// On failure after step 2, call Slot.Drop (or Teardown): a slot nobody
// consumes makes the source retain WAL without limit.
//
// All object names come from Names and are quoted wherever they are
// interpolated into SQL.
package logical
