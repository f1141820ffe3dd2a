package compare

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshllm/meshllm/e2e/stack"
)

// A policy may run on several picker replicas, the gateway's picks spread
// round robin over them: NAME@N shares state between the replicas,
// NAME@N/alone runs them without sharing, and a fault may be added:
// NAME@N+kill kills one replica FaultAfter into the run (the gateway keeps
// sending it picks, which fail, as to a pod that crashed) and starts it
// again FaultEvery later; NAME@N+rolling restarts every replica in turn,
// one each FaultEvery, from FaultAfter on, as a rolling update does (each
// leaves the picker Service before it stops, and rejoins it once ready).

// Faults.
const (
	FaultKill    = "kill"
	FaultRolling = "rolling"
)

// ParsePolicy reads a policy name, with its replica suffix if any.
func ParsePolicy(s string) (Policy, error) {
	s = strings.TrimSpace(s)
	base, rest, several := strings.Cut(s, "@")
	p, ok := Policies[base]
	if !ok {
		return Policy{}, fmt.Errorf("unknown policy %q", base)
	}
	if !several {
		return p, nil
	}
	if p.Listener != stack.LLMListener {
		return Policy{}, fmt.Errorf("%q: %s never asks the picker", s, base)
	}
	rest, fault, _ := strings.Cut(rest, "+")
	count, alone, _ := strings.Cut(rest, "/")
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 || n > 9 {
		return Policy{}, fmt.Errorf("%q: want %s@N with N in 1..9", s, base)
	}
	switch alone {
	case "":
	case "alone":
		p.Unshared = true
	default:
		return Policy{}, fmt.Errorf("%q: %q after / is not alone", s, alone)
	}
	switch fault {
	case "", FaultKill, FaultRolling:
	default:
		return Policy{}, fmt.Errorf("%q: fault %q is not kill or rolling", s, fault)
	}
	if fault != "" && n < 2 {
		return Policy{}, fmt.Errorf("%q: a fault needs at least 2 replicas", s)
	}
	p.Name, p.Pickers, p.Fault = s, n, fault
	return p, nil
}

// injectFaults runs p's fault on s until ctx ends or it is over, logging
// what it did; the returned wait blocks until it has stopped.
func injectFaults(ctx context.Context, s *stack.Stack, p Policy, after, every time.Duration, log io.Writer) (wait func() error) {
	if p.Fault == "" {
		return func() error { return nil }
	}
	var wg sync.WaitGroup
	var err error
	start := time.Now()
	note := func(format string, args ...any) {
		fmt.Fprintf(log, " [%.1f s: "+format+"]", append([]any{time.Since(start).Seconds()}, args...)...)
	}
	pause := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	restart := func(i int, stop func(int) error, how string) bool {
		if err = stop(i); err != nil {
			return false
		}
		note("replica %d %s", i, how)
		if !pause(every) {
			return false
		}
		if err = s.RestartReplica(i); err != nil {
			return false
		}
		note("replica %d ready again", i)
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !pause(after) {
			return
		}
		switch p.Fault {
		case FaultKill:
			restart(s.Replicas()-1, s.KillReplica, "killed")
		case FaultRolling:
			for i := range s.Replicas() {
				if !restart(i, s.StopReplica, "stopped") || (i < s.Replicas()-1 && !pause(every)) {
					return
				}
			}
		}
	}()
	return func() error { wg.Wait(); return err }
}
