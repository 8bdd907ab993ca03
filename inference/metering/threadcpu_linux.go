//go:build linux

package metering

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time (user + system) the calling OS thread has used.
// The caller must hold the thread with runtime.LockOSThread for two
// readings to measure the same goroutine's work.
//
// clock_gettime(CLOCK_THREAD_CPUTIME_ID), not getrusage(RUSAGE_THREAD):
// getrusage is cheaper on some virtual machines but reads the scheduler's
// runtime as of the last tick or context switch, so a short evaluation
// would be charged a whole tick of whatever the thread did before it. The
// clock brings the runtime up to date first, to the nanosecond.
func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
