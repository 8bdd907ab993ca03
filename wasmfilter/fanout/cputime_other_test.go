//go:build !unix

package fanout_test

import "time"

// cpuTime is unknown here; the CPU figures then read 0.
func cpuTime() time.Duration { return 0 }
