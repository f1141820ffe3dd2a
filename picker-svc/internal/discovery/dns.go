package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Resolver is the part of net.Resolver DNS discovery uses.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// DNS resolves "name:port" targets (a headless Service, or docker-compose
// service names) every Interval; each address becomes "ip:port".
type DNS struct {
	Pool     string
	Targets  []string // host:port
	Interval time.Duration
	Resolver Resolver
	Logger   *slog.Logger
	// Health learns of each round (resource "dns"): synced once every
	// name resolved in one round (nil: not reported).
	Health *Health
	// Ticks replaces the interval timer (tests).
	Ticks <-chan time.Time
}

// Run implements Source. A name that fails to resolve keeps its previous
// addresses (a DNS blip must not empty the pool); the failure is logged once
// per change.
func (d *DNS) Run(ctx context.Context, sink Sink) error {
	for _, t := range d.Targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return fmt.Errorf("dns target %q: %w", t, err)
		}
	}
	if d.Resolver == nil {
		d.Resolver = net.DefaultResolver
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	ticks := d.Ticks
	if ticks == nil {
		if d.Interval <= 0 {
			d.Interval = 5 * time.Second
		}
		t := time.NewTicker(d.Interval)
		defer t.Stop()
		ticks = t.C
	}
	if d.Health != nil {
		d.Health.Track("dns")
	}
	last := map[string][]string{}
	failing := map[string]bool{}
	var reported []string
	for {
		allResolved := true
		for _, t := range d.Targets {
			host, port, _ := net.SplitHostPort(t)
			ctx2, cancel := context.WithTimeout(ctx, 2*time.Second)
			ips, err := d.Resolver.LookupHost(ctx2, host)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				if !failing[t] {
					d.Logger.Warn("dns lookup failing; keeping previous addresses", "target", t, "err", err, "kept", len(last[t]))
				}
				failing[t] = true
				allResolved = false
				continue
			}
			if failing[t] {
				d.Logger.Info("dns lookup recovered", "target", t)
			}
			failing[t] = false
			addrs := make([]string, 0, len(ips))
			for _, ip := range ips {
				addrs = append(addrs, net.JoinHostPort(ip, port))
			}
			last[t] = addrs
		}
		var all []string
		for _, a := range last {
			all = append(all, a...)
		}
		sort.Strings(all)
		all = slices.Compact(all)
		if reported == nil || !slices.Equal(all, reported) {
			sink.SetEndpoints(d.Pool, all)
			reported = all
		}
		switch {
		case d.Health == nil:
		case allResolved:
			d.Health.Listed("dns", len(all))
		default:
			d.Health.Missed("dns")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
	}
}

// portString is strconv.Itoa for ports (kept here for the kubernetes mode).
func portString(p int32) string { return strconv.Itoa(int(p)) }
