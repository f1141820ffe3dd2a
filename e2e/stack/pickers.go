package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/meshllm/meshllm/picker-svc/app"
)

// pickerProc is one picker-svc replica; its addresses stay across restarts.
type pickerProc struct {
	addr, gossip string
	stop         context.CancelFunc // nil: not running
	done         chan error
	// listed: the gateway's picker cluster sends it picks (a Service's
	// ready endpoints).
	listed bool
}

// relist gives the gateway's picker cluster the listed replicas, as
// Kubernetes gives a Service its ready pods.
func (s *Stack) relist() error {
	s.mu.Lock()
	var addrs []string
	for _, p := range s.pickers {
		if p.listed {
			addrs = append(addrs, p.addr)
		}
	}
	s.mu.Unlock()
	if s.Gateway == nil {
		return nil
	}
	return s.Gateway.SetEndpoints(PickerCluster, addrs)
}

func (s *Stack) setListed(i int, listed bool) error {
	s.mu.Lock()
	s.pickers[i].listed = listed
	s.mu.Unlock()
	return s.relist()
}

// startPickers starts Config.Pickers replicas, each joining the ones
// before it when they share.
func (s *Stack) startPickers() error {
	n := max(s.cfg.Pickers, 1)
	for i := range n {
		addr := "127.0.0.1:0"
		if i == 0 && s.cfg.PickerAddr != "" {
			addr = s.cfg.PickerAddr
		}
		p := &pickerProc{addr: addr}
		if s.cfg.PickerSharing && n > 1 {
			p.gossip = "127.0.0.1:0"
		}
		s.mu.Lock()
		s.pickers = append(s.pickers, p)
		s.mu.Unlock()
		if err := s.runPicker(i); err != nil {
			return err
		}
	}
	return nil
}

// PickerAddr is where the first picker-svc replica listens (stable across
// restarts).
func (s *Stack) PickerAddr() string { return s.PickerAddrs()[0] }

// PickerAddrs are every replica's listen addresses.
func (s *Stack) PickerAddrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.pickers))
	for i, p := range s.pickers {
		out[i] = p.addr
	}
	return out
}

// runPicker starts replica i on its addresses and waits until it is ready.
func (s *Stack) runPicker(i int) error {
	s.mu.Lock()
	p := s.pickers[i]
	o := app.Options{Args: s.cfg.PickerArgs, Log: s.cfg.Log, Listen: p.addr, Endpoints: s.Fleet.Addrs, Pool: s.cfg.Pool,
		Objects: []byte(s.cfg.Objects), ReplicaListen: p.gossip}
	if p.gossip != "" {
		for j, q := range s.pickers {
			if j != i && q.gossip != "" && q.gossip != "127.0.0.1:0" {
				o.ReplicaPeers = append(o.ReplicaPeers, q.gossip)
			}
		}
	}
	if s.cfg.ExtProc && i == 0 {
		o.ExtProcListen = s.extProc
		if o.ExtProcListen == "" {
			o.ExtProcListen = "127.0.0.1:0"
		}
		if s.cfg.ExtProcTLS {
			o.ExtProcTLS = "self-signed"
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	o.Ready = func(a net.Addr) { ready <- a }
	o.ExtProcReady = func(a net.Addr) {
		s.mu.Lock()
		s.extProc = a.String()
		s.mu.Unlock()
	}
	o.ReplicaReady = func(a string) {
		s.mu.Lock()
		p.gossip = a
		s.mu.Unlock()
	}
	go func() { done <- app.Run(ctx, o) }()
	select {
	case a := <-ready:
		s.mu.Lock()
		p.addr, p.stop, p.done = a.String(), cancel, done
		s.mu.Unlock()
	case err := <-done:
		cancel()
		return fmt.Errorf("picker-svc %d: %w", i, err)
	}
	if err := waitReady("http://"+p.addr+"/readyz", 30*time.Second); err != nil {
		return err
	}
	return s.setListed(i, true)
}

// waitReady polls /readyz: readiness needs a first scrape (and, for a
// replica, its peers' state), which come in the picker's own goroutines.
func waitReady(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s", url, limit)
}

// StopReplica takes picker replica i out of the gateway's picker cluster,
// then stops it (gracefully: it finishes its picks and leaves the group),
// as Kubernetes ends a terminating pod's endpoints; it waits until it is
// gone.
func (s *Stack) StopReplica(i int) error {
	if err := s.setListed(i, false); err != nil {
		return err
	}
	return s.KillReplica(i)
}

// KillReplica stops picker replica i and leaves it in the gateway's picker
// cluster: picks sent there fail (connection refused), as to a pod that
// crashed before its readiness probe noticed.
func (s *Stack) KillReplica(i int) error {
	s.mu.Lock()
	p := s.pickers[i]
	stop, done := p.stop, p.done
	p.stop = nil
	s.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	return <-done
}

// RestartReplica starts picker replica i again on the same addresses; the
// gateway sends it picks once it is ready.
func (s *Stack) RestartReplica(i int) error {
	if err := s.setListed(i, false); err != nil {
		return err
	}
	return s.runPicker(i)
}

// Replicas is how many picker replicas the stack has.
func (s *Stack) Replicas() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pickers)
}

// StopPicker stops every picker replica: the picker service is down.
func (s *Stack) StopPicker() error {
	var errs []error
	for i := range s.Replicas() {
		errs = append(errs, s.KillReplica(i))
	}
	return errors.Join(errs...)
}

// RestartPicker starts every picker replica again on the same addresses.
func (s *Stack) RestartPicker() error {
	for i := range s.Replicas() {
		if err := s.RestartReplica(i); err != nil {
			return err
		}
	}
	return nil
}
