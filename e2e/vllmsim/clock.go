package vllmsim

import (
	"context"
	"time"
)

// Clock gives simulated time in seconds. Every time the simulator reports
// (metrics, stats) is simulated time from its clock.
type Clock interface {
	// Now is the current simulated time in seconds.
	Now() float64
	// SleepUntil blocks until simulated time t or until ctx is done.
	SleepUntil(ctx context.Context, t float64) error
}

// realClock is real time scaled by a speed factor: simulated = real x speed.
type realClock struct {
	start time.Time
	speed float64
}

// NewClock returns a clock running speed simulated seconds per real second.
func NewClock(speed float64) Clock { return &realClock{start: time.Now(), speed: speed} }

func (c *realClock) Now() float64 { return time.Since(c.start).Seconds() * c.speed }

func (c *realClock) SleepUntil(ctx context.Context, t float64) error {
	d := time.Duration((t - c.Now()) / c.speed * float64(time.Second))
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
