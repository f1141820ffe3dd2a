package replicas

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Peers are the Service's endpoints, ready or not (a replica warming up is
// not ready yet), but not those terminating; other Services' are not peers.
func TestEndpointSlicePeers(t *testing.T) {
	yes, no := true, false
	slice := func(name, svc string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "llm",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps}
	}
	ep := func(ip string, ready, terminating *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating}}
	}
	client := fake.NewSimpleClientset(
		slice("gossip-a", "picker-gossip", ep("10.0.0.1", &yes, nil), ep("10.0.0.2", &no, nil)),
		slice("gossip-b", "picker-gossip", ep("10.0.0.3", &no, &yes)),
		slice("other", "vllm", ep("10.0.0.9", &yes, nil)),
	)
	got, err := EndpointSlicePeers(client, "llm", "picker-gossip", 7946)(context.Background())
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"10.0.0.1:7946", "10.0.0.2:7946"}, got)
}
