// Package stack starts meshllm end to end on localhost, in process: a fleet
// of simulated vLLM servers (e2e/vllmsim), picker-svc (picker-svc/app) and
// the gateway host (e2e/gateway) running the compiled filter, wired together
// the way envoy/envoy.yaml wires a real Envoy. The e2e scenarios and
// `make demo` use it.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/meshllm/meshllm/e2e/extprocgw"
	"github.com/meshllm/meshllm/e2e/gateway"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// Listener and cluster names in envoy/envoy.yaml.
const (
	PlainListener = "plain_8080"
	LLMListener   = "llm_8081"
	PlainCluster  = "vllm"
	LLMCluster    = "vllm_llm"
	PickerCluster = "picker"
)

// Config describes one stack.
type Config struct {
	Wasm      []byte
	EnvoyYAML string // default: envoy/envoy.yaml under the module root
	Sims      []vllmsim.Config
	// Objects is InferencePool/InferenceModel YAML for the picker; Pool
	// names the pool the simulated servers belong to.
	Objects string
	Pool    string
	// PickerArgs are extra picker flags (the rest of the picker's
	// settings are fields here).
	PickerArgs []string
	// PluginConfig replaces the LLM listener's filter configuration.
	PluginConfig string
	// AllowOnHeadersStopIteration overrides envoy.yaml's flag when set.
	AllowOnHeadersStopIteration *bool
	// ConnectTimeout, when set, replaces the gateway clusters'
	// connect_timeout (gateway.Options.ConnectTimeout).
	ConnectTimeout time.Duration
	Workers        int
	// Cache shares compiled filter code between stacks (a comparison starts
	// a fresh stack per run); default one per stack.
	Cache     wazero.CompilationCache
	AccessLog io.Writer // default: discarded
	Log       io.Writer // picker, gateway and simulator logs; default: discarded
	// Fixed ports (the demo); zero values pick free ports.
	PlainAddr, LLMAddr, AdminAddr, PickerAddr string
	// ExtProcGatewayAddr is where ExtProcGateway listens (with ExtProc).
	ExtProcGatewayAddr string
	// ExtProc also serves picks over ext_proc and starts ExtProcGateway,
	// the gateway path (an InferencePool naming the picker), beside the
	// Wasm filter's; ExtProcFailOpen is its failure_mode_allow.
	ExtProc         bool
	ExtProcFailOpen bool
	// ExtProcTLS serves ext_proc with a self-signed certificate, and the
	// gateway dials it over TLS.
	ExtProcTLS bool
	// Pickers is how many picker-svc replicas run (default 1). The
	// gateway's picker cluster lists them all and spreads picks round
	// robin, as a gateway's workers (or several gateways) behind one
	// Service would; the ext_proc gateway talks to the first.
	Pickers int
	// PickerSharing runs the pickers as one replica group (gossip on
	// loopback); otherwise each keeps its own state.
	PickerSharing bool
}

// Stack is a running system.
type Stack struct {
	cfg     Config
	Fleet   *vllmsim.Fleet
	Gateway *gateway.Gateway
	// ExtProcGateway routes through the picker over ext_proc (Config.ExtProc).
	ExtProcGateway *extprocgw.Gateway

	mu      sync.Mutex
	pickers []*pickerProc
	extProc string // the first picker's ext_proc address (stable across restarts)
}

// ModuleRoot finds the repository root (where go.mod is) from the working
// directory, so tests in any package find envoy/ and wasm/.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("stack: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// LoadWasm reads wasm/meshllm.wasm; it fails (never skips) if it is missing.
func LoadWasm() ([]byte, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(root, "wasm", "meshllm.wasm"))
	if err != nil {
		return nil, fmt.Errorf("%w (run `make wasm`)", err)
	}
	return b, nil
}

// Start brings the stack up and waits until the picker is ready.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.AccessLog == nil {
		cfg.AccessLog = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.EnvoyYAML == "" {
		root, err := ModuleRoot()
		if err != nil {
			return nil, err
		}
		cfg.EnvoyYAML = filepath.Join(root, "envoy", "envoy.yaml")
	}
	s := &Stack{cfg: cfg}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var err error
	if s.Fleet, err = vllmsim.StartFleet(ctx, cfg.Sims); err != nil {
		return nil, err
	}
	if err := s.startPickers(); err != nil {
		return nil, err
	}
	listeners := map[string]string{PlainListener: "127.0.0.1:0", LLMListener: "127.0.0.1:0"}
	if cfg.PlainAddr != "" {
		listeners[PlainListener] = cfg.PlainAddr
	}
	if cfg.LLMAddr != "" {
		listeners[LLMListener] = cfg.LLMAddr
	}
	admin := cfg.AdminAddr
	if admin == "" {
		admin = "127.0.0.1:0"
	}
	opts := gateway.Options{
		EnvoyYAML: cfg.EnvoyYAML, Wasm: cfg.Wasm, ListenerAddrs: listeners, AdminAddr: admin,
		Endpoints: map[string][]string{
			PlainCluster: s.Fleet.Addrs, LLMCluster: s.Fleet.Addrs, PickerCluster: s.PickerAddrs(),
		},
		Workers: cfg.Workers, Cache: cfg.Cache, AccessLog: cfg.AccessLog, Log: log.New(cfg.Log, "gateway: ", log.LstdFlags),
		ConnectTimeout: cfg.ConnectTimeout,
	}
	if cfg.PluginConfig != "" {
		opts.PluginConfig = map[string]string{LLMListener: cfg.PluginConfig}
	}
	if cfg.AllowOnHeadersStopIteration != nil {
		opts.AllowOnHeadersStopIteration = map[string]bool{LLMListener: *cfg.AllowOnHeadersStopIteration}
	}
	if s.Gateway, err = gateway.Start(ctx, opts); err != nil {
		return nil, err
	}
	if cfg.ExtProc {
		if s.ExtProcGateway, err = extprocgw.Start(extprocgw.Options{ExtProc: s.extProc, Endpoints: s.Fleet.Addrs,
			FailOpen: cfg.ExtProcFailOpen, TLS: cfg.ExtProcTLS, Addr: cfg.ExtProcGatewayAddr}); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// ExtProcAddr is where picker-svc serves ext_proc (with Config.ExtProc).
func (s *Stack) ExtProcAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.extProc
}

// URL of a listener ("plain_8080" or "llm_8081").
func (s *Stack) URL(listener string) string { return "http://" + s.Gateway.Addr(listener) }

// PrometheusText is the gateway's /stats/prometheus.
func (s *Stack) PrometheusText() string { return s.Gateway.PrometheusText() }

// Close stops everything.
func (s *Stack) Close() {
	if s.ExtProcGateway != nil {
		s.ExtProcGateway.Close()
	}
	if s.Gateway != nil {
		s.Gateway.Close()
	}
	_ = s.StopPicker()
	if s.Fleet != nil {
		_ = s.Fleet.Close()
	}
}
