package server_test

import (
	"time"

	"golang.org/x/sys/unix"
)

// sleep blocks the calling thread in nanosleep(2). time.Sleep is not used:
// its timers are served by the network poller, whose epoll wait rounds a
// sub-millisecond timeout up to a whole millisecond when the process is
// otherwise idle, which made a 2,000 req/s pacer a quarter of a
// millisecond late at the median.
func sleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	_ = unix.Nanosleep(&ts, nil) // an interrupted sleep ends early; the caller polls the rest
}
