//go:build unix

package vllmsim

import (
	"syscall"
	"time"
)

// cpuTime is the process's user plus system CPU time: the benchmarks report
// CPU per token, which unlike wall-clock throughput does not depend on what
// else the (shared) machine is running.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
