package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/picker-svc/internal/discovery"
	"github.com/meshllm/meshllm/picker-svc/internal/fakeapiserver"
)

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

var podsAge = regexp.MustCompile(`meshllm_picker_discovery_last_sync_age_seconds\{resource="pods"\} (\S+)`)

func TestKubernetesModeWaitsForTheAPIServerAndStaysReadyThroughAnOutage(t *testing.T) {
	// One model server, reachable at the pod IP 127.0.0.1.
	vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("vllm:num_requests_running 0\nvllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0.1\n"))
	}))
	t.Cleanup(vllm.Close)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(vllm.URL, "http://"))
	require.NoError(t, err)
	targetPort, err := strconv.Atoi(port)
	require.NoError(t, err)

	// The API server of the shipped configuration (InferencePools,
	// InferenceModels, InferenceObjectives, InferenceModelRewrites), away.
	s, err := fakeapiserver.NewDown(
		fakeapiserver.Resource{GVR: discovery.PoolsV1alpha2, Kind: "InferencePool"},
		fakeapiserver.Resource{GVR: discovery.ModelsV1alpha2, Kind: "InferenceModel"},
		fakeapiserver.Resource{GVR: discovery.ObjectivesV1alpha2, Kind: "InferenceObjective"},
		fakeapiserver.Resource{GVR: discovery.RewritesV1alpha2, Kind: "InferenceModelRewrite"})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	s.Apply(fakeapiserver.Resource{GVR: discovery.PoolsV1alpha2, Kind: "InferencePool"}, map[string]any{
		"metadata": map[string]any{"name": "pool", "namespace": "ns"},
		"spec":     map[string]any{"targetPortNumber": targetPort, "selector": map[string]any{"app": "vllm"}}})
	s.Apply(fakeapiserver.Pods, fakeapiserver.Pod("ns", "vllm-0", "127.0.0.1", true, map[string]string{"app": "vllm"}))

	dir := t.TempDir()
	kubeconfig, err := s.Kubeconfig(dir)
	require.NoError(t, err)
	cfg := filepath.Join(dir, "picker.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("discovery: {retryInitial: 5ms, retryMax: 50ms}\n"), 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Args: []string{"--discovery", "kubernetes", "--namespace", "ns", "--kubeconfig", kubeconfig,
			"--listen", "127.0.0.1:0", "--config", cfg}, Log: &logs, Ready: func(a net.Addr) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var base string
	select {
	case a := <-ready:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("picker-svc exited while the API server was away: %v", err)
	}

	// Away at start: running, not ready, saying why, retrying.
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "discovery cannot sync yet") >= 4 }, 10*time.Second, time.Millisecond,
		"pods, inferencepools, inferencemodels, inferenceobjectives and inferencemodelrewrites each logged once")
	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "discovery has not synced")
	// Four of the five logged: the fifth's failure may still be on its way.
	failed := regexp.MustCompile(`meshllm_picker_discovery_failures_total\{resource="inferenceobjectives"\} [1-9]`)
	require.Eventually(t, func() bool { _, metrics := get(t, base+"/metrics"); return failed.MatchString(metrics) },
		10*time.Second, time.Millisecond, "the objectives' failed sync counted")
	select {
	case err := <-done:
		t.Fatalf("picker-svc exited while the API server was away: %v", err)
	default:
	}

	// The API server comes: ready once synced and the pod scraped.
	require.NoError(t, s.Up())
	require.Eventually(t, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK }, 10*time.Second, 2*time.Millisecond)

	// An outage: still ready (the pod is scraped), the age of the pods'
	// data grows, and it is logged.
	s.Down()
	require.Eventually(t, func() bool {
		_, metrics := get(t, base+"/metrics")
		m := podsAge.FindStringSubmatch(metrics)
		return m != nil && m[1] != "0" && strings.Contains(logs.String(), "discovery failing")
	}, 10*time.Second, 2*time.Millisecond)
	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, "routing on the last known endpoints through an API outage")

	require.NoError(t, s.Up())
	require.Eventually(t, func() bool {
		_, metrics := get(t, base+"/metrics")
		m := podsAge.FindStringSubmatch(metrics)
		return m != nil && m[1] == "0"
	}, 10*time.Second, 2*time.Millisecond)
	require.Contains(t, logs.String(), "discovery recovered")
}
