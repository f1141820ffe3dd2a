package deploycheck

// The promises of the picker replicas' objects (both paths): several
// replicas, spread over nodes, a disruption budget that keeps most of them,
// and gossip through a headless Service that lists them ready or not.

import (
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// checkReplicasIfAny is CheckReplicas unless the picker runs alone: one
// replica, no gossip Service, no budget, no replica flags.
func checkReplicasIfAny(dep *appsv1.Deployment, gossip *corev1.Service, pdb *policyv1.PodDisruptionBudget) error {
	alone := gossip == nil && pdb == nil && (dep.Spec.Replicas == nil || *dep.Spec.Replicas <= 1)
	for _, c := range dep.Spec.Template.Spec.Containers {
		for _, a := range c.Args {
			alone = alone && !strings.HasPrefix(a, "--replica-")
		}
	}
	if alone {
		return nil
	}
	return CheckReplicas(dep, gossip, pdb)
}

// CheckReplicas checks the picker Deployment's replica settings against
// its gossip Service and PodDisruptionBudget.
func CheckReplicas(dep *appsv1.Deployment, gossip *corev1.Service, pdb *policyv1.PodDisruptionBudget) error {
	if gossip == nil || pdb == nil {
		return errors.New("replicas: want a headless gossip Service and a PodDisruptionBudget beside the picker Deployment")
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf("replicas: "+format, a...)) }
	pod := dep.Spec.Template
	n := int32(1)
	if dep.Spec.Replicas != nil {
		n = *dep.Spec.Replicas
	}
	if n < 2 {
		fail("Deployment runs %d replica; want at least 2 (one replica is an outage at every upgrade)", n)
	}
	if ru := dep.Spec.Strategy.RollingUpdate; dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil ||
		ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		fail("want a RollingUpdate strategy with maxUnavailable 0 (a new replica is ready, warmed up, before an old one stops)")
	}
	for _, o := range []struct {
		what string
		ns   string
	}{{"gossip Service", gossip.Namespace}, {"PodDisruptionBudget", pdb.Namespace}} {
		if o.ns != dep.Namespace {
			fail("%s namespace %q differs from the Deployment's %q", o.what, o.ns, dep.Namespace)
		}
	}
	selects := func(sel *metav1.LabelSelector) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && sel != nil && !s.Empty() && s.Matches(labels.Set(pod.Labels))
	}
	if !selects(pdb.Spec.Selector) {
		fail("PodDisruptionBudget selector does not select the picker pods")
	}
	switch {
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == 0:
		if m := pdb.Spec.MinAvailable.IntVal; m < 1 || m >= n {
			fail("PodDisruptionBudget minAvailable %d: want 1..%d (some replica always answers, and a drain can proceed)", m, n-1)
		}
	case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MaxUnavailable.Type == 0:
		if m := pdb.Spec.MaxUnavailable.IntVal; m < 1 || m >= n {
			fail("PodDisruptionBudget maxUnavailable %d: want 1..%d", m, n-1)
		}
	default:
		fail("PodDisruptionBudget: want an integer minAvailable or maxUnavailable")
	}
	spread := false
	for _, c := range pod.Spec.TopologySpreadConstraints {
		spread = spread || (c.TopologyKey == corev1.LabelHostname && c.MaxSkew == 1 && selects(c.LabelSelector))
	}
	if !spread {
		fail("want a topologySpreadConstraint on %s, maxSkew 1, selecting the picker pods", corev1.LabelHostname)
	}
	if gossip.Spec.ClusterIP != corev1.ClusterIPNone || !gossip.Spec.PublishNotReadyAddresses {
		fail("gossip Service %s: want clusterIP None and publishNotReadyAddresses (a starting replica must be found before it is ready)", gossip.Name)
	}
	if len(gossip.Spec.Selector) == 0 {
		fail("gossip Service has no selector")
	}
	for k, v := range gossip.Spec.Selector {
		if pod.Labels[k] != v {
			fail("gossip Service selector %s=%s does not select the picker pods", k, v)
		}
	}
	if len(pod.Spec.Containers) != 1 {
		return errors.Join(append(errs, errors.New("replicas: want one container"))...)
	}
	c := pod.Spec.Containers[0]
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	_, port, ok := strings.Cut(args["--replica-listen"], ":")
	if !ok || port == "" {
		fail("--replica-listen %q: want :PORT", args["--replica-listen"])
	}
	if want := gossip.Name + ":" + port; !strings.Contains(","+args["--replica-peers"]+",", ","+want+",") {
		fail("--replica-peers %q: want %s (the headless Service's name, every replica's address)", args["--replica-peers"], want)
	}
	byName := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		byName[p.Name] = p
	}
	protocols := map[corev1.Protocol]bool{}
	for _, sp := range gossip.Spec.Ports {
		cp, ok := byName[sp.TargetPort.StrVal]
		if !ok || fmt.Sprint(cp.ContainerPort) != port || fmt.Sprint(sp.Port) != port || cp.Protocol != sp.Protocol {
			fail("gossip Service port %s must target a container port %s/%s of the same number (--replica-peers names the Service's port)", sp.Name, port, sp.Protocol)
			continue
		}
		protocols[sp.Protocol] = true
	}
	if !protocols[corev1.ProtocolTCP] || !protocols[corev1.ProtocolUDP] {
		fail("gossip Service: want the gossip port over TCP and UDP (memberlist uses both)")
	}
	advertise := false
	for _, e := range c.Env {
		advertise = advertise || (e.Name == "PICKER_REPLICA_ADVERTISE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "status.podIP")
	}
	if !advertise {
		fail("PICKER_REPLICA_ADVERTISE must come from status.podIP")
	}
	return errors.Join(errs...)
}
