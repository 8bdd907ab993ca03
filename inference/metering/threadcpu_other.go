//go:build !linux

package metering

import "time"

// threadCPU is unsupported off Linux: models are still counted, but their
// CPU time is not measured.
func threadCPU() (time.Duration, bool) { return 0, false }
