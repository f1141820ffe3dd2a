package replicas

import (
	"context"
	"net"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// EndpointSlicePeers lists the addresses of a Service's EndpointSlices,
// ready or not (a replica warming up is not ready yet and must still be
// found), at port.
func EndpointSlicePeers(client kubernetes.Interface, namespace, service string, port int) PeerSource {
	return func(ctx context.Context) ([]string, error) {
		list, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
					continue
				}
				for _, a := range e.Addresses {
					out = append(out, net.JoinHostPort(a, strconv.Itoa(port)))
				}
			}
		}
		return out, nil
	}
}
