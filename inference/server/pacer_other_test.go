//go:build !linux

package server_test

import "time"

// sleep is time.Sleep where nanosleep(2) is not used; the comparison
// benchmark needs Linux's /proc for the server's CPU anyway.
func sleep(d time.Duration) { time.Sleep(d) }
