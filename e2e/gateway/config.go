package gateway

import (
	"fmt"
	"os"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	streamlogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	overridev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshllm/meshllm/e2e/deploycheck"
	"github.com/meshllm/meshllm/e2e/envoystats"
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
	Wasm      *WasmSpec
}

// WasmSpec is the Wasm HTTP filter of a listener.
type WasmSpec struct {
	PluginConfig                []byte
	AllowOnHeadersStopIteration bool
	FailOpen                    bool
}

// ClusterSpec is a static cluster.
type ClusterSpec struct {
	Name      string
	Endpoints []string
	// OverrideHeader is the header of an override_host policy: a request
	// naming a member of the cluster goes there, others round robin.
	OverrideHeader string
}

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
				ls.Wasm = &WasmSpec{
					PluginConfig:                []byte(sv.GetValue()),
					AllowOnHeadersStopIteration: w.GetConfig().GetAllowOnHeadersStopIteration().GetValue(),
					FailOpen:                    w.GetConfig().GetFailurePolicy().String() == "FAIL_OPEN",
				}
			}
		}
		spec.Listeners = append(spec.Listeners, ls)
	}
	return spec, nil
}

func clusterSpec(c *clusterv3.Cluster) (*ClusterSpec, error) {
	cs := &ClusterSpec{Name: c.GetName()}
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
