//go:build unix

package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LeaseFile is the name of the lease in the state directory; its lock is
// LeaseFile+".lock".
const LeaseFile = "rollouts.lease"

// Lease elects the one replica that drives rollouts among those sharing a
// state directory: a file naming the holder and when its hold expires. The
// holder renews it every tick; another replica takes it once it has
// expired. Reading and replacing it happen under an exclusive flock(2) of
// a lock file beside it, so two replicas cannot both see it expired and
// both take it. flock works between processes on one machine and on
// shared file systems that support it (not every NFS does).
type Lease struct {
	dir      string
	identity string
	ttl      time.Duration
	now      func() time.Time
}

type leaseDoc struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// NewLease returns the lease of dir for identity, held ttl at a time.
func NewLease(dir, identity string, ttl time.Duration, now func() time.Time) (*Lease, error) {
	if identity == "" || ttl <= 0 {
		return nil, errors.New("rollout lease: an identity and a positive ttl are required")
	}
	if now == nil {
		now = time.Now
	}
	return &Lease{dir: dir, identity: identity, ttl: ttl, now: now}, nil
}

// Acquire takes or renews the lease and reports whether this replica holds
// it now, and who does.
func (l *Lease) Acquire() (held bool, holder string, err error) {
	err = l.locked(func(cur leaseDoc) (*leaseDoc, error) {
		now := l.now()
		if cur.Holder != "" && cur.Holder != l.identity && now.Before(cur.Expires) {
			holder = cur.Holder
			return nil, nil
		}
		held, holder = true, l.identity
		return &leaseDoc{Holder: l.identity, Expires: now.Add(l.ttl)}, nil
	})
	return held, holder, err
}

// Release gives the lease up if this replica holds it, so another can take
// it without waiting for the expiry.
func (l *Lease) Release() error {
	return l.locked(func(cur leaseDoc) (*leaseDoc, error) {
		if cur.Holder != l.identity {
			return nil, nil
		}
		return &leaseDoc{}, nil
	})
}

// locked runs f on the current lease under the lock; a non-nil result
// replaces it.
func (l *Lease) locked(f func(leaseDoc) (*leaseDoc, error)) error {
	lock, err := os.OpenFile(filepath.Join(l.dir, LeaseFile+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("rollout lease: %w", err)
	}
	defer lock.Close() // closing releases the flock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("rollout lease: lock: %w", err)
	}
	path := filepath.Join(l.dir, LeaseFile)
	var cur leaseDoc
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("rollout lease: %w", err)
	default:
		if err := json.Unmarshal(data, &cur); err != nil {
			// A torn or foreign file: treat it as free rather than
			// stalling every rollout forever.
			cur = leaseDoc{}
		}
	}
	next, err := f(cur)
	if err != nil || next == nil {
		return err
	}
	out, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("rollout lease: %w", err)
	}
	return writeAtomic(path, out)
}
