package helm

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/meshllm/meshllm/e2e/deploycheck"
)

// want is what a rendering must hold, from the values it was given.
type want struct {
	namespace    string
	mesh         bool
	routeOn      string // headers or body
	meshPool     bool   // the chart renders the v1alpha2 pool
	gateway      bool
	gatewayMade  bool // the chart renders the Gateway
	pool         string
	poolPort     int
	poolSelector map[string]string
	poolService  string
	ingressNS    string
	ingressPort  uint32
	pickerImage  string
	wasmURL      string
	replicas     int32
	strategy     appsv1.DeploymentStrategyType // "" for none set
	meshRole     *rbacv1.Role                  // the grants of istio/picker-rbac.yaml
	server       string                        // picker-svc's route table
}

// helmLabels are the labels the chart adds to every object's metadata.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/part-of"}

// checkRendering holds every promise of a rendering: each object decoded
// strictly into its API type and checked with e2e/deploycheck's validators
// (the ones the static files pass), plus what the values asked for.
func checkRendering(docs []doc, w want) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	seen := map[string]bool{}
	var meshK8s [][]byte
	var meshObjs []any
	gw := &deploycheck.GatewayPath{}
	var wasmPlugin, bodyFilter, poolCluster, meshPool []byte
	for _, d := range docs {
		if seen[d.key()] {
			fail("%s rendered twice", d.key())
		}
		seen[d.key()] = true
		for _, l := range helmLabels {
			if d.labels[l] == "" {
				fail("%s: no %s label", d.key(), l)
			}
		}
		wantNS := w.namespace
		if d.apiVersion == "extensions.istio.io/v1alpha1" || d.apiVersion == "networking.istio.io/v1alpha3" {
			wantNS = w.ingressNS
		}
		if d.namespace != wantNS {
			fail("%s: namespace %q, want %q", d.key(), d.namespace, wantNS)
		}
		switch {
		case strings.HasPrefix(d.file, "mesh-picker"):
			meshK8s = append(meshK8s, d.raw)
		case strings.HasPrefix(d.file, "gateway-"):
			if err := deploycheck.DecodeGatewayPath(d.raw, gw); err != nil {
				fail("%s: %w", d.file, err)
			}
		case d.kind == "WasmPlugin":
			wasmPlugin = d.raw
		case d.kind == "EnvoyFilter" && d.file == "mesh-envoyfilter.yaml":
			bodyFilter = d.raw
		case d.kind == "EnvoyFilter" && d.file == "mesh-pool-cluster.yaml":
			poolCluster = d.raw
		case d.kind == "InferencePool" && d.file == "mesh-inferencepool.yaml":
			meshPool = d.raw
		default:
			fail("%s from %s: not an object this chart should render", d.key(), d.file)
		}
	}

	if !w.mesh {
		if meshK8s != nil || wasmPlugin != nil || bodyFilter != nil || poolCluster != nil || meshPool != nil {
			fail("mesh path disabled, yet mesh objects rendered")
		}
	} else {
		for _, raw := range meshK8s {
			o, err := deploycheck.K8sObject(raw)
			if err != nil {
				fail("mesh picker: %w", err)
				continue
			}
			meshObjs = append(meshObjs, o)
		}
		if err := deploycheck.CheckPicker(meshObjs, w.pool, w.server); err != nil {
			fail("mesh picker: %w", err)
		}
		var svc *corev1.Service
		for _, o := range meshObjs {
			switch v := o.(type) {
			case *corev1.Service:
				if v.Spec.ClusterIP != corev1.ClusterIPNone { // not the replicas' gossip
					svc = v
				}
			case *appsv1.Deployment:
				checkDeployment(v, w, fail)
			case *rbacv1.Role:
				if !reflect.DeepEqual(v.Rules, w.meshRole.Rules) {
					fail("mesh Role rules differ from istio/picker-rbac.yaml's")
				}
			}
		}
		if svc == nil {
			return errors.Join(append(errs, errors.New("mesh path: no picker Service"))...)
		}
		cluster, authority, err := deploycheck.PickerCluster(svc)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		switch {
		case w.routeOn == "headers" && (wasmPlugin == nil || bodyFilter != nil):
			fail("route_on headers: want the WasmPlugin and not the body-routing EnvoyFilter")
		case w.routeOn == "body" && (bodyFilter == nil || wasmPlugin != nil):
			fail("route_on body: want the body-routing EnvoyFilter and not the WasmPlugin")
		}
		if wasmPlugin != nil {
			wp, err := deploycheck.CheckWasmPlugin(wasmPlugin, cluster, authority, w.pool)
			if err != nil {
				fail("WasmPlugin: %w", err)
			} else {
				if wp.GetUrl() != w.wasmURL {
					fail("WasmPlugin url %q, want %q", wp.GetUrl(), w.wasmURL)
				}
				if m := wp.GetMatch(); len(m) != 1 || len(m[0].GetPorts()) != 1 || m[0].GetPorts()[0].GetNumber() != w.ingressPort {
					fail("WasmPlugin match %v, want port %d only", m, w.ingressPort)
				}
			}
		}
		if bodyFilter != nil {
			if err := deploycheck.CheckEnvoyFilter(bodyFilter, cluster, authority, w.pool, w.wasmURL, w.ingressPort); err != nil {
				fail("EnvoyFilter meshllm-body-routing: %w", err)
			}
		}
		if poolCluster == nil {
			fail("mesh path: no pool-cluster EnvoyFilter (override_host and the header strip)")
		} else if err := deploycheck.CheckPoolCluster(poolCluster, fmt.Sprintf("%s.%s.svc.cluster.local", w.poolService, w.namespace), w.poolPort); err != nil {
			fail("EnvoyFilter meshllm-pool-override-host: %w", err)
		}
		switch {
		case w.meshPool && meshPool == nil:
			fail("mesh path: no InferencePool")
		case !w.meshPool && meshPool != nil:
			fail("mesh.createInferencePool false, yet an InferencePool rendered")
		case meshPool != nil:
			o, spec, err := deploycheck.MeshInferencePool(meshPool)
			if err != nil {
				fail("%w", err)
			} else if o.Metadata.Name != w.pool || spec.TargetPortNumber != w.poolPort || !reflect.DeepEqual(spec.Selector, w.poolSelector) || spec.ExtensionRef.Name != svc.Name {
				fail("InferencePool %s: port %d selector %v extensionRef %q, want %s %d %v %q", o.Metadata.Name, spec.TargetPortNumber, spec.Selector, spec.ExtensionRef.Name, w.pool, w.poolPort, w.poolSelector, svc.Name)
			}
		}
	}

	empty := deploycheck.GatewayPath{}
	if !w.gateway {
		if *gw != empty {
			fail("gateway path disabled, yet gateway objects rendered")
		}
		return errors.Join(errs...)
	}
	if w.gatewayMade != (gw.Gateway != nil) {
		fail("gateway.gateway.create %v, Gateway rendered %v", w.gatewayMade, gw.Gateway != nil)
	}
	if gw.Gateway == nil {
		// The existing Gateway the route attaches to: the static one.
		stand := strings.Replace(string(existingGateway), "namespace: default", "namespace: "+w.namespace, 1)
		if err := deploycheck.DecodeGatewayPath([]byte(stand), gw); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	var mp deploycheck.MeshPool
	mp.Spec.TargetPortNumber = int32(w.poolPort)
	mp.Spec.Selector = w.poolSelector
	if err := deploycheck.CheckGatewayPath(gw, mp, w.meshRole, w.server); err != nil {
		fail("gateway path: %w", err)
	}
	if gw.Deployment != nil {
		checkDeployment(gw.Deployment, w, fail)
	}
	if gw.Pool != nil && gw.Pool.Metadata.Name != w.pool {
		fail("gateway InferencePool %q, want %q", gw.Pool.Metadata.Name, w.pool)
	}
	return errors.Join(errs...)
}

// existingGateway stands for a Gateway the chart does not make
// (gateway.gateway.create false); set from gateway/gateway.yaml.
var existingGateway []byte

// checkDeployment: image, replicas and strategy as the values say.
func checkDeployment(d *appsv1.Deployment, w want, fail func(string, ...any)) {
	if c := d.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != w.pickerImage {
		fail("Deployment %s: image, want %q", d.Name, w.pickerImage)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != w.replicas {
		fail("Deployment %s: replicas %v, want %d", d.Name, d.Spec.Replicas, w.replicas)
	}
	if d.Spec.Strategy.Type != w.strategy {
		fail("Deployment %s: strategy %q, want %q", d.Name, d.Spec.Strategy.Type, w.strategy)
	}
}
