package deploycheck

// The checks of picker-svc's Kubernetes objects (Deployment, Service, RBAC):
// used on the static files and on the Helm chart's renderings.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// K8sObject decodes one document strictly into the k8s.io/api type its kind
// names: unknown or misspelt fields are errors.
func K8sObject(doc []byte) (any, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "v1 ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "rbac.authorization.k8s.io/v1 Role":
		obj = &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		obj = &rbacv1.RoleBinding{}
	default:
		return nil, fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func K8sObjects(stream []byte) ([]any, error) {
	docs, err := Docs(stream)
	if err != nil {
		return nil, err
	}
	var out []any
	for _, d := range docs {
		o, err := K8sObject(d)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// CheckPicker holds the promises of picker-deployment.yaml and picker-rbac.yaml.
func CheckPicker(objs []any, pool string, serverSource string) error {
	var dep *appsv1.Deployment
	var svc, gossip *corev1.Service
	var pdb *policyv1.PodDisruptionBudget
	var sa *corev1.ServiceAccount
	var role *rbacv1.Role
	var rb *rbacv1.RoleBinding
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.Deployment:
			dep = v
		case *corev1.Service:
			if v.Spec.ClusterIP == corev1.ClusterIPNone {
				gossip = v
			} else {
				svc = v
			}
		case *policyv1.PodDisruptionBudget:
			pdb = v
		case *corev1.ServiceAccount:
			sa = v
		case *rbacv1.Role:
			role = v
		case *rbacv1.RoleBinding:
			rb = v
		}
	}
	if dep == nil || svc == nil || sa == nil || role == nil || rb == nil {
		return errors.New("want Deployment, Service, ServiceAccount, Role and RoleBinding")
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	ns := svc.Namespace
	for _, n := range []string{dep.Namespace, sa.Namespace, role.Namespace, rb.Namespace} {
		if n != ns {
			fail("namespace %q differs from the Service's %q (the Role only grants its own namespace)", n, ns)
		}
	}
	pod := dep.Spec.Template
	for k, v := range dep.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			fail("Deployment selector %s=%s does not select its own pods", k, v)
		}
	}
	for k, v := range svc.Spec.Selector {
		if pod.Labels[k] != v {
			fail("Service selector %s=%s does not select the picker pods", k, v)
		}
	}
	if pod.Spec.ServiceAccountName != sa.Name {
		fail("serviceAccountName %q, want %q (the RBAC's)", pod.Spec.ServiceAccountName, sa.Name)
	}
	if len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa.Name || rb.RoleRef.Name != role.Name || rb.RoleRef.Kind != "Role" {
		fail("RoleBinding must bind Role %s to ServiceAccount %s", role.Name, sa.Name)
	}
	grants, writes := map[string]bool{}, map[string]bool{}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if slices.Contains(r.Verbs, "list") && slices.Contains(r.Verbs, "watch") {
				grants[res] = true
			}
			if slices.Contains(r.Verbs, "update") {
				writes[res] = true
			}
		}
	}
	for _, res := range []string{"pods", "inferencepools", "inferencemodels", "inferenceobjectives", "inferencemodelrewrites"} {
		if !grants[res] {
			fail("Role does not let the picker list and watch %s", res)
		}
	}
	for _, res := range []string{"inferenceobjectives/status", "inferencemodelrewrites/status"} {
		if !writes[res] {
			fail("Role does not let the picker update %s (its Accepted condition)", res)
		}
	}
	if len(pod.Spec.Containers) != 1 {
		return errors.Join(append(errs, errors.New("want one container"))...)
	}
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	listen := ""
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	listen = args["--listen"]
	if sp := svc.Spec.Ports; len(sp) != 1 || ports[sp[0].TargetPort.StrVal] == 0 {
		fail("Service targetPort must name a container port")
	} else if want := fmt.Sprintf(":%d", ports[sp[0].TargetPort.StrVal]); listen != want {
		fail("--listen %q, want %q (the port the Service targets)", listen, want)
	}
	if args["--discovery"] != "kubernetes" || args["--pool"] != pool {
		fail("args %v: want --discovery=kubernetes --pool=%s", c.Args, pool)
	}
	nsEnv := false
	for _, e := range c.Env {
		nsEnv = nsEnv || (e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace")
	}
	if !nsEnv {
		fail("POD_NAMESPACE must come from metadata.namespace")
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			fail("%s probe: want httpGet", name)
			continue
		}
		if !strings.Contains(serverSource, `"GET `+p.HTTPGet.Path+`"`) {
			fail("%s probe path %s is not a route of picker-svc's server", name, p.HTTPGet.Path)
		}
		if ports[p.HTTPGet.Port.StrVal] == 0 {
			fail("%s probe port %q is not a container port", name, p.HTTPGet.Port.String())
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
		fail("liveness must use /healthz (readyz fails while no pod is scraped; a restart would not help)")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		fail("want cpu/memory requests and a memory limit")
	}
	sc, psc := c.SecurityContext, pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		fail("want runAsNonRoot, no privilege escalation, read-only root and all capabilities dropped")
	}
	if err := checkReplicasIfAny(dep, gossip, pdb); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
