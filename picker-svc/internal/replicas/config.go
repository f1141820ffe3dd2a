package replicas

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config is one replica's part in the group. The zero Listen means replica
// mode is off: the picker runs alone, exactly as without this package.
type Config struct {
	// Listen is the gossip address (host:port, TCP and UDP), e.g. :7946.
	Listen string
	// Advertise is the address peers reach this replica at; "" is the
	// Listen address, or the host's first private address when Listen's
	// host is unspecified (a pod's IP).
	Advertise string
	// Peers are host:port addresses of other replicas: IPs, or DNS names
	// whose every address is a peer (a headless Service's name). Resolved
	// again every RejoinInterval.
	Peers []string
	// KubernetesService names a Service in Namespace whose EndpointSlices
	// list the peers (ready or not), at Listen's port.
	KubernetesService string
	Namespace         string
	// SecretKey, when set, encrypts gossip (AES-GCM; 16, 24 or 32 bytes).
	SecretKey []byte
	// NodeName is unique per replica; default: the host name and a random
	// suffix (a restarted process is a new member).
	NodeName string

	// FlushInterval bounds how long a pick waits before it is sent, and
	// spaces a replica's sends (a pick after a quiet spell goes at once).
	FlushInterval time.Duration
	// MaxQueueBytes bounds picks and ends waiting to be sent; past it the
	// oldest are dropped (and counted).
	MaxQueueBytes int
	// MaxPacketBytes is the largest message sent over UDP; larger ones go
	// over TCP. Keep it under the network's MTU.
	MaxPacketBytes int
	// MaxMessageBytes bounds one TCP message.
	MaxMessageBytes int
	// WarmupTimeout bounds how long a starting replica waits for a peer's
	// state before it reports ready anyway (the first replica of a group).
	WarmupTimeout time.Duration
	// RejoinInterval is how often peers are resolved and those not in the
	// group joined (a restarted peer, a healed network split).
	RejoinInterval time.Duration
	// StateBlocks bounds the prefix blocks handed to a joining peer.
	StateBlocks int
}

// Enabled reports whether replica mode is on.
func (c *Config) Enabled() bool { return c.Listen != "" }

// Defaults fills unset tunables.
func (c *Config) Defaults() {
	setD := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setI := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	setD(&c.FlushInterval, 5*time.Millisecond)
	setD(&c.WarmupTimeout, 10*time.Second)
	setD(&c.RejoinInterval, 10*time.Second)
	setI(&c.MaxQueueBytes, 4<<20)
	setI(&c.MaxPacketBytes, 1400)
	setI(&c.MaxMessageBytes, 1<<20)
	setI(&c.StateBlocks, 1<<20)
}

// Validate checks a configuration with Defaults applied.
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if _, err := hostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	if c.Advertise != "" {
		if h, err := hostPort(c.Advertise); err != nil || net.ParseIP(h) == nil {
			errs = append(errs, fmt.Errorf("advertise %q: want ip:port", c.Advertise))
		}
	}
	for _, p := range c.Peers {
		if _, err := hostPort(p); err != nil {
			errs = append(errs, fmt.Errorf("peer %q: %w", p, err))
		}
	}
	if c.KubernetesService != "" && c.Namespace == "" {
		errs = append(errs, errors.New("a Kubernetes Service for peers needs a namespace"))
	}
	if n := len(c.SecretKey); n != 0 && n != 16 && n != 24 && n != 32 {
		errs = append(errs, fmt.Errorf("secret key is %d bytes, want 16, 24 or 32", n))
	}
	if c.FlushInterval <= 0 || c.FlushInterval > time.Second {
		errs = append(errs, fmt.Errorf("flush interval %s: want (0, 1s]", c.FlushInterval))
	}
	if c.WarmupTimeout < 0 || c.RejoinInterval <= 0 {
		errs = append(errs, errors.New("warm-up timeout must be >= 0 and rejoin interval > 0"))
	}
	if c.MaxPacketBytes < 512 || c.MaxPacketBytes > 65000 {
		errs = append(errs, fmt.Errorf("max packet bytes %d: want 512..65000", c.MaxPacketBytes))
	}
	if c.MaxMessageBytes < 64<<10 || c.MaxMessageBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("max message bytes %d: want 64 KiB..16 MiB", c.MaxMessageBytes))
	}
	if c.MaxQueueBytes < c.MaxMessageBytes {
		errs = append(errs, fmt.Errorf("max queue bytes %d: want at least max message bytes (%d)", c.MaxQueueBytes, c.MaxMessageBytes))
	}
	if c.StateBlocks < 0 || c.StateBlocks > 1<<21 {
		errs = append(errs, fmt.Errorf("state blocks %d: want 0..%d", c.StateBlocks, 1<<21))
	}
	return errors.Join(errs...)
}

// ParseSecretKey reads a key written as base64 (as `openssl rand -base64
// 32` prints it).
func ParseSecretKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("secret key: want base64: %w", err)
	}
	if n := len(k); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("secret key is %d bytes, want 16, 24 or 32", n)
	}
	return k, nil
}

func hostPort(s string) (string, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("port %q", p)
	}
	return h, nil
}
