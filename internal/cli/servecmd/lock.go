package servecmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// LockFile is the file in the data directory a running serve holds locked.
const LockFile = "serve.lock"

// lockDataDir takes an exclusive lock on dir for this serve: two services
// on one data directory would run each other's queue and workers. The lock
// goes away with the process, also on kill -9.
func lockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, hint.Wrap(fmt.Errorf("another serve is already running on data directory %s", dir),
				"stop it first, or give this one its own --data-dir")
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}
