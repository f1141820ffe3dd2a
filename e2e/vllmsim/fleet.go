package vllmsim

import (
	"context"
	"errors"
	"net"
	"strconv"
)

// Fleet is a set of simulated servers started together (demo, e2e tests,
// benchmark).
type Fleet struct {
	Servers []*Server
	// Addrs are the servers' "host:port" listen addresses, in cfgs order.
	Addrs []string
}

// StartFleet starts one server per config and returns once all listen. Each
// config's Addr chooses its address ("" = 127.0.0.1 on a random port; see
// ConsecutiveAddrs); a zero Seed becomes the server's index + 1. On error
// the servers already started are stopped. The fleet stops when ctx is done
// or Close is called.
func StartFleet(ctx context.Context, cfgs []Config) (*Fleet, error) {
	f := &Fleet{}
	for i, c := range cfgs {
		if c.Seed == 0 {
			c.Seed = uint64(i + 1) // servers draw different stop lengths
		}
		s, err := NewServer(c)
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		f.Servers = append(f.Servers, s)
		f.Addrs = append(f.Addrs, s.Addr())
	}
	return f, nil
}

// URLs are the servers' base URLs (http://host:port).
func (f *Fleet) URLs() []string {
	out := make([]string, len(f.Servers))
	for i, s := range f.Servers {
		out[i] = s.URL()
	}
	return out
}

// Stats returns every server's counters, in order.
func (f *Fleet) Stats() []Stats {
	out := make([]Stats, len(f.Servers))
	for i, s := range f.Servers {
		out[i] = s.Stats()
	}
	return out
}

// Close stops every server and waits for them.
func (f *Fleet) Close() error {
	var errs []error
	for _, s := range f.Servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// ConsecutiveAddrs returns n addresses host:base, host:base+1, ...
func ConsecutiveAddrs(host string, base, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = net.JoinHostPort(host, strconv.Itoa(base+i))
	}
	return out
}
