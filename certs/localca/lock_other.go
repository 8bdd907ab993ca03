//go:build !unix

package localca

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// lockDir takes an exclusive lock on the state directory by creating its
// lock file with O_EXCL, waiting while another holder has it. Unlike flock
// on Unix, a holder that crashes leaves the file behind: one older than
// staleLock is taken to be such a leftover and removed.
func lockDir(dir string) (unlock func(), err error) {
	const staleLock = time.Minute
	p := dirLockPath(dir)
	deadline := time.Now().Add(2 * staleLock)
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_ = f.Close()
			return func() { _ = os.Remove(p) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("local ca: lock state directory: %w", err)
		}
		if st, serr := os.Stat(p); serr == nil && time.Since(st.ModTime()) > staleLock {
			_ = os.Remove(p)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("local ca: lock %s: held for over %s", p, 2*staleLock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isReadOnly reports whether err comes from a read-only file system.
func isReadOnly(error) bool { return false }
