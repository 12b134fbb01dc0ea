package logical

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxNameLen is PostgreSQL's identifier limit (NAMEDATALEN - 1).
const maxNameLen = 63

// namePrefix starts every object name we create, so status, teardown and
// validate can tell our objects from the user's.
const namePrefix = "seren_"

// ObjectNames are the names of the replication objects of one database.
// The three are equal by design: CreateSlot finds the publication through
// it, and an operator sees at once which slot serves which subscription.
type ObjectNames struct {
	Publication  string // on the source database
	Slot         string // on the source server (slot names are server-wide)
	Subscription string // on the target database
}

// Names returns the replication object names for database db: "seren_",
// the name lowercased with every character outside [a-z0-9_] replaced by
// "_" and truncated, "_", and 8 hex digits of the SHA-256 of the exact
// name. The result is a valid slot name ([a-z0-9_], at most 63 bytes), is
// the same on every run, and differs for databases whose names differ only
// in case or punctuation ("Sales", "sales", "sales!").
func Names(db string) ObjectNames {
	sum := sha256.Sum256([]byte(db))
	suffix := "_" + hex.EncodeToString(sum[:4])
	keep := maxNameLen - len(namePrefix) - len(suffix)
	var b strings.Builder
	for i := 0; i < len(db) && b.Len() < keep; i++ {
		c := db[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte('_')
		}
	}
	n := namePrefix + b.String() + suffix
	return ObjectNames{Publication: n, Slot: n, Subscription: n}
}

// IsOurs reports whether name looks like one Names produces.
func IsOurs(name string) bool {
	if !strings.HasPrefix(name, namePrefix) || len(name) < len(namePrefix)+9 {
		return false
	}
	h := name[len(name)-9:]
	if h[0] != '_' {
		return false
	}
	_, err := hex.DecodeString(h[1:])
	return err == nil
}
