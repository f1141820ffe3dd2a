package gateway

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	streamlogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	overridev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	wasmpluginv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshllm/meshllm/e2e/deploycheck"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

// Spec is what the gateway mirrors from an Envoy bootstrap (envoy/envoy.yaml):
// read with go-control-plane's own types, so the host and the real
// configuration cannot drift apart.
type Spec struct {
	AdminPort int
	Listeners []ListenerSpec
	Clusters  map[string]*ClusterSpec
	StatsTags []envoystats.TagSpecifier
}

// ListenerSpec is one listener with one route to one cluster.
type ListenerSpec struct {
	Name      string
	Port      int
	Cluster   string
	AccessLog string // text format; "" for none
	// StripHeaders are the request headers the HCM's
	// early_header_mutation_extensions remove before routing and before any
	// HTTP filter runs (lower case).
	StripHeaders []string
	// StreamIdleTimeout is the HCM's stream_idle_timeout (0: none).
	StreamIdleTimeout time.Duration
	Wasm              *WasmSpec
}

// WasmSpec is the Wasm HTTP filter of a listener.
type WasmSpec struct {
	// Name is the plugin's config.name: Envoy's wasm.<name>.* stats.
	Name                        string
	PluginConfig                []byte
	AllowOnHeadersStopIteration bool
	// FailurePolicy is FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD (UNSPECIFIED is
	// read as Envoy reads it: FAIL_CLOSED).
	FailurePolicy wasmpluginv3.FailurePolicy
	// ReloadBackoff is reload_config.backoff.base_interval (default 1s).
	ReloadBackoff time.Duration
}

// ClusterSpec is a static cluster.
type ClusterSpec struct {
	Name      string
	Endpoints []string
	// OverrideHeader is the header of an override_host policy: a request
	// naming a member of the cluster goes there, others round robin.
	OverrideHeader string
	// ConnectTimeout is the cluster's connect_timeout: how long a new
	// connection to an endpoint may take before the request fails 503 UF.
	ConnectTimeout time.Duration
}

// defaultConnectTimeout is Envoy's when a cluster sets none
// (envoy/config/cluster/v3/cluster.proto, connect_timeout: "If not set, a
// default value of 5s will be used").
const defaultConnectTimeout = 5 * time.Second

// LoadSpec reads and validates an Envoy bootstrap.
func LoadSpec(path string) (*Spec, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := deploycheck.Bootstrap(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	spec := &Spec{
		AdminPort: int(b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue()),
		Clusters:  map[string]*ClusterSpec{},
	}
	for _, t := range b.GetStatsConfig().GetStatsTags() {
		spec.StatsTags = append(spec.StatsTags, envoystats.TagSpecifier{TagName: t.GetTagName(), Regex: t.GetRegex()})
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		cs, err := clusterSpec(c)
		if err != nil {
			return nil, err
		}
		spec.Clusters[cs.Name] = cs
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		ls := ListenerSpec{Name: l.GetName(), Port: int(l.GetAddress().GetSocketAddress().GetPortValue())}
		if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
			return nil, fmt.Errorf("listener %s: the gateway mirrors one chain with one HTTP connection manager", ls.Name)
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			return nil, fmt.Errorf("listener %s: %w", ls.Name, err)
		}
		vhs := hcm.GetRouteConfig().GetVirtualHosts()
		if len(vhs) != 1 || len(vhs[0].GetRoutes()) != 1 {
			return nil, fmt.Errorf("listener %s: the gateway mirrors one virtual host with one route", ls.Name)
		}
		ls.Cluster = vhs[0].GetRoutes()[0].GetRoute().GetCluster()
		if ls.StripHeaders, err = earlyRemovals(hcm); err != nil {
			return nil, fmt.Errorf("listener %s: %w", ls.Name, err)
		}
		// Envoy's default when the field is absent is 5 minutes; 0s disables it.
		ls.StreamIdleTimeout = 5 * time.Minute
		if d := hcm.GetStreamIdleTimeout(); d != nil {
			ls.StreamIdleTimeout = d.AsDuration()
		}
		if spec.Clusters[ls.Cluster] == nil {
			return nil, fmt.Errorf("listener %s routes to unknown cluster %q", ls.Name, ls.Cluster)
		}
		for _, al := range hcm.GetAccessLog() {
			sl := &streamlogv3.StdoutAccessLog{}
			if al.GetTypedConfig().UnmarshalTo(sl) == nil {
				ls.AccessLog = sl.GetLogFormat().GetTextFormatSource().GetInlineString()
			}
		}
		for _, f := range hcm.GetHttpFilters() {
			w := &wasmv3.Wasm{}
			if f.GetTypedConfig().MessageIs(w) {
				if err := f.GetTypedConfig().UnmarshalTo(w); err != nil {
					return nil, err
				}
				sv := &wrapperspb.StringValue{}
				if err := w.GetConfig().GetConfiguration().UnmarshalTo(sv); err != nil {
					return nil, fmt.Errorf("listener %s: wasm configuration: %w", ls.Name, err)
				}
				policy, err := failurePolicy(w.GetConfig())
				if err != nil {
					return nil, fmt.Errorf("listener %s: %w", ls.Name, err)
				}
				backoff := time.Second
				if d := w.GetConfig().GetReloadConfig().GetBackoff().GetBaseInterval(); d != nil {
					backoff = d.AsDuration()
				}
				ls.Wasm = &WasmSpec{
					Name:                        w.GetConfig().GetName(),
					PluginConfig:                []byte(sv.GetValue()),
					AllowOnHeadersStopIteration: w.GetConfig().GetAllowOnHeadersStopIteration().GetValue(),
					FailurePolicy:               policy,
					ReloadBackoff:               backoff,
				}
			}
		}
		spec.Listeners = append(spec.Listeners, ls)
	}
	return spec, nil
}

func clusterSpec(c *clusterv3.Cluster) (*ClusterSpec, error) {
	cs := &ClusterSpec{Name: c.GetName(), ConnectTimeout: defaultConnectTimeout}
	if d := c.GetConnectTimeout(); d != nil {
		cs.ConnectTimeout = d.AsDuration()
	}
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			cs.Endpoints = append(cs.Endpoints, sa.GetAddress()+":"+strconv.Itoa(int(sa.GetPortValue())))
		}
	}
	for _, p := range c.GetLoadBalancingPolicy().GetPolicies() {
		oh := &overridev3.OverrideHost{}
		if p.GetTypedExtensionConfig().GetTypedConfig().MessageIs(oh) {
			if err := p.GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(oh); err != nil {
				return nil, err
			}
			for _, src := range oh.GetOverrideHostSources() {
				if h := src.GetHeader(); h != "" {
					cs.OverrideHeader = h
				}
			}
		}
	}
	return cs, nil
}

// failurePolicy reads a plugin's failure policy as Envoy's PluginConfig
// constructor does (source/extensions/common/wasm/wasm.cc): UNSPECIFIED is
// FAIL_CLOSED, and fail_open together with failure_policy is rejected. The
// deprecated fail_open alone is refused here rather than mirrored: it also
// lets the stream whose callback trapped continue (proxy-wasm-cpp-host
// src/context.cc CHECK_FAIL reads PluginBase::fail_open_, which Envoy fills
// from fail_open only), a path no shipped configuration uses.
func failurePolicy(pc *wasmpluginv3.PluginConfig) (wasmpluginv3.FailurePolicy, error) {
	p := pc.GetFailurePolicy()
	if pc.GetFailOpen() {
		if p != wasmpluginv3.FailurePolicy_UNSPECIFIED {
			return 0, errors.New("only one of fail_open or failure_policy can be set (Envoy rejects both)")
		}
		return 0, errors.New("the deprecated fail_open is not mirrored: use failure_policy")
	}
	switch p {
	case wasmpluginv3.FailurePolicy_UNSPECIFIED:
		return wasmpluginv3.FailurePolicy_FAIL_CLOSED, nil
	case wasmpluginv3.FailurePolicy_FAIL_CLOSED, wasmpluginv3.FailurePolicy_FAIL_OPEN, wasmpluginv3.FailurePolicy_FAIL_RELOAD:
		return p, nil
	}
	return 0, fmt.Errorf("unknown failure policy %v", p)
}

// earlyRemovals returns the headers an HCM's early header mutations remove.
// Only the header_mutation extension's remove action is mirrored; anything
// else is an error, so the gateway cannot silently differ from Envoy.
func earlyRemovals(hcm *hcmv3.HttpConnectionManager) ([]string, error) {
	var out []string
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		hm := &earlymutationv3.HeaderMutation{}
		if !ext.GetTypedConfig().MessageIs(hm) {
			return nil, fmt.Errorf("early header mutation %q: only %s is mirrored", ext.GetName(), "envoy.http.early_header_mutation.header_mutation")
		}
		if err := ext.GetTypedConfig().UnmarshalTo(hm); err != nil {
			return nil, err
		}
		for _, m := range hm.GetMutations() {
			h := m.GetRemove()
			if h == "" {
				return nil, fmt.Errorf("early header mutation %q: only remove is mirrored", ext.GetName())
			}
			out = append(out, strings.ToLower(h))
		}
	}
	return out, nil
}
