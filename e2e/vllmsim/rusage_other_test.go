//go:build !unix

package vllmsim

import "time"

func cpuTime() time.Duration { return 0 }
