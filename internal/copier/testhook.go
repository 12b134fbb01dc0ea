package copier

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// killAfter is a test hook: with SEREN_TEST_KILL_AFTER=N in its
// environment, the process SIGKILLs itself at the Nth step boundary (a
// table's rows committed, each index or constraint built, a table
// finished, and init's later stages), so tests can prove a re-run
// completes from every boundary. Unset (the only case outside tests) it
// does nothing.
var killAfter, _ = strconv.ParseInt(os.Getenv("SEREN_TEST_KILL_AFTER"), 10, 64)

var boundaries atomic.Int64

// Boundary marks a step boundary for the test hook above.
func Boundary() {
	if killAfter > 0 && boundaries.Add(1) == killAfter {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns: the signal is on its way
	}
}
