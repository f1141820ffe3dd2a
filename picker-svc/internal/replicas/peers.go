package replicas

import (
	"context"
	"errors"
	"net"
	"slices"
	"time"
)

// Run warms the replica up from a peer, then keeps joining peers that are
// not in the group (restarted ones, the other side of a healed network
// split) every RejoinInterval, until ctx ends.
func (r *Replica) Run(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.WarmupTimeout)
	retry := 100 * time.Millisecond
	for !r.Warm() {
		addrs, err := r.candidates(ctx)
		switch {
		case r.join(addrs) > 0:
			r.setWarm("replica warmed up from its peers")
		case err == nil && r.peers == nil && len(r.cfg.Peers) == 0:
			r.setWarm("replica mode without peers configured: serving alone")
		case !time.Now().Before(deadline):
			r.setWarm("no peer answered within the warm-up timeout: serving alone until one does",
				"timeout", r.cfg.WarmupTimeout.String(), "candidates", len(addrs), "err", errString(err))
		}
		if r.Warm() {
			break
		}
		if !sleep(ctx, retry) {
			return
		}
		retry = min(2*retry, time.Second)
	}
	for sleep(ctx, r.cfg.RejoinInterval) {
		addrs, err := r.candidates(ctx)
		if err != nil {
			r.log.Warn("listing peers", "err", err)
		}
		r.join(addrs)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// candidates lists peer addresses that are not live members: the
// configured peers (names resolved) and the peer source's.
func (r *Replica) candidates(ctx context.Context) ([]string, error) {
	var all []string
	var errs []error
	for _, p := range r.cfg.Peers {
		addrs, err := resolve(ctx, p)
		if err != nil {
			errs = append(errs, err)
		}
		all = append(all, addrs...)
	}
	if r.peers != nil {
		addrs, err := r.peers(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		all = append(all, addrs...)
	}
	members := map[string]bool{r.ml.LocalNode().Address(): true}
	for _, n := range r.ml.Members() {
		members[n.Address()] = true
	}
	out := all[:0]
	for _, a := range all {
		if !members[a] {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), errors.Join(errs...)
}

// resolve turns host:port into ip:port for every address of host.
func resolve(ctx context.Context, hostport string) ([]string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) != nil {
		return []string{hostport}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = net.JoinHostPort(ip, port)
	}
	return out, nil
}

// join joins each address in turn (a join is a push-pull: the peer's
// state is merged before it returns); the number that answered.
func (r *Replica) join(addrs []string) int {
	n := 0
	for _, a := range addrs {
		if _, err := r.ml.Join([]string{a}); err != nil {
			r.log.Debug("joining a peer", "addr", a, "err", err)
			continue
		}
		n++
	}
	return n
}
