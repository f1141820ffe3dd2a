package app

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshllm/meshllm/picker-svc/internal/replicas"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/server"
)

// buildReplica joins the replica group when replica mode is on: the
// scheduler's picks and ends go to the peers, theirs come here, and the
// picker is not ready before it has its peers' state.
func (p *picker) buildReplica(sched *scheduling.Scheduler, srv *server.Server) error {
	rc, err := p.cfg.ReplicaConfig()
	if err != nil {
		return fmt.Errorf("replicas: %w", err)
	}
	if !rc.Enabled() {
		return nil
	}
	var peers replicas.PeerSource
	if rc.KubernetesService != "" {
		rest, err := clientcmd.BuildConfigFromFlags("", p.cfg.Discovery.Kubeconfig)
		if err != nil {
			return fmt.Errorf("replicas: kubernetes config: %w", err)
		}
		kc, err := kubernetes.NewForConfig(rest)
		if err != nil {
			return fmt.Errorf("replicas: %w", err)
		}
		_, port, _ := net.SplitHostPort(rc.Listen)
		n, _ := strconv.Atoi(port)
		peers = replicas.EndpointSlicePeers(kc, rc.Namespace, rc.KubernetesService, n)
	}
	if p.replica, err = replicas.New(rc, sched, replicas.StoreLookup(p.store), peers, p.metrics.Registry, p.log); err != nil {
		return err
	}
	p.log.Info("replica mode", "gossip", p.replica.Addr(), "name", p.replica.Name(), "peers", rc.Peers,
		"kubernetesService", rc.KubernetesService, "encrypted", len(rc.SecretKey) > 0)
	srv.RequireReady(func() error {
		if !p.replica.Warm() {
			return errors.New("waiting for peer replicas' state")
		}
		return nil
	})
	return nil
}

func (p *picker) closeReplica() {
	if p.replica == nil {
		return
	}
	if err := p.replica.Close(); err != nil {
		p.log.Warn("leaving the replica group", "err", err)
	}
	p.replica = nil
}
