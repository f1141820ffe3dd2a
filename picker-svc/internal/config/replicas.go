package config

import (
	"errors"
	"net"
	"os"

	"github.com/meshllm/meshllm/picker-svc/internal/replicas"
)

// ReplicaSettings are the config file's replicas keys.
type ReplicaSettings struct {
	// Listen is the gossip address (TCP and UDP); "" runs the picker alone.
	Listen string `json:"listen"`
	// Advertise is the address peers reach this replica at: an IP (the
	// Listen port) or ip:port.
	Advertise string `json:"advertise"`
	// Peers are host:port of other replicas: IPs or DNS names (every
	// address of a name is a peer: a headless Service's name).
	Peers []string `json:"peers"`
	// KubernetesService names a Service in discovery.namespace whose
	// EndpointSlices list the peers.
	KubernetesService string `json:"kubernetesService"`
	// SecretKeyFile holds a base64 key (16, 24 or 32 bytes) that encrypts
	// gossip; every replica needs the same.
	SecretKeyFile  string   `json:"secretKeyFile"`
	FlushInterval  Duration `json:"flushInterval"`
	WarmupTimeout  Duration `json:"warmupTimeout"`
	RejoinInterval Duration `json:"rejoinInterval"`
	MaxQueueBytes  int      `json:"maxQueueBytes"`
	MaxPacketBytes int      `json:"maxPacketBytes"`
	StateBlocks    int      `json:"stateBlocks"`
}

// ReplicaConfig returns the replica settings (replica mode is off when
// Listen is ""), reading the secret key file.
func (c *Config) ReplicaConfig() (replicas.Config, error) {
	r := &c.Replicas
	out := replicas.Config{Listen: r.Listen, Advertise: r.Advertise, Peers: r.Peers, KubernetesService: r.KubernetesService,
		Namespace: c.Discovery.Namespace, FlushInterval: r.FlushInterval.Duration, WarmupTimeout: r.WarmupTimeout.Duration,
		RejoinInterval: r.RejoinInterval.Duration, MaxQueueBytes: r.MaxQueueBytes, MaxPacketBytes: r.MaxPacketBytes,
		StateBlocks: r.StateBlocks}
	if ip := net.ParseIP(r.Advertise); ip != nil && r.Listen != "" {
		_, port, err := net.SplitHostPort(r.Listen)
		if err == nil {
			out.Advertise = net.JoinHostPort(r.Advertise, port)
		}
	}
	if r.SecretKeyFile != "" {
		b, err := os.ReadFile(r.SecretKeyFile)
		if err != nil {
			return out, err
		}
		if out.SecretKey, err = replicas.ParseSecretKey(string(b)); err != nil {
			return out, err
		}
	}
	out.Defaults()
	return out, out.Validate()
}

func (c *Config) validateReplicas() error {
	r := &c.Replicas
	if r.Listen == "" {
		if len(r.Peers) > 0 || r.KubernetesService != "" {
			return errors.New("peers are set but listen is not: set replicas.listen (--replica-listen) to run as a replica")
		}
		return nil
	}
	_, err := c.ReplicaConfig()
	return err
}
