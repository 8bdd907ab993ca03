//go:build unix

package localca

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock (flock) on the state
// directory's lock file, blocking until any other process or CA value
// holding it lets go. The kernel drops the lock if the holder dies, so a
// crashed replica never leaves the directory locked.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(dirLockPath(dir), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local ca: lock state directory: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("local ca: lock %s: %w", f.Name(), err)
	}
	return func() {
		// Closing the descriptor releases the lock.
		_ = f.Close()
	}, nil
}

// isReadOnly reports whether err comes from a read-only file system (a
// state directory mounted from a Kubernetes Secret), where nothing can be
// created and so nothing needs a lock.
func isReadOnly(err error) bool { return errors.Is(err, syscall.EROFS) }
