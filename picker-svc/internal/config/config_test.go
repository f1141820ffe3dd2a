package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "picker.yaml")
	require.NoError(t, os.WriteFile(f, []byte(`
listen: ":7000"
discovery:
  mode: static
  endpoints: ["10.0.0.1:8000"]
scrape:
  interval: 100ms
  staleAfter: 5s
scheduling:
  weights: {DEFAULT: {queue: 5}}
  shedSheddable: {queue: 1, kv: 0.5}
`), 0o600))

	c, err := Load([]string{"--config", f}, env(nil))
	require.NoError(t, err)
	require.Equal(t, ":7000", c.Listen)
	require.Equal(t, 100*time.Millisecond, c.Scrape.Interval.Duration)
	require.Equal(t, time.Second, c.Scrape.Timeout.Duration, "defaults fill what the file leaves out")
	sc, err := c.SchedulingConfig()
	require.NoError(t, err)
	require.Equal(t, 5.0, sc.Profiles["DEFAULT"].Weight("queue"), "weights overlay the default profile")
	require.Equal(t, scheduling.DefaultConfig().Profiles["DEFAULT"].Weight("kv_cache"), sc.Profiles["DEFAULT"].Weight("kv_cache"), "and keep what they do not name")
	require.Equal(t, 1.0, sc.ShedSheddable.Queue)
	require.JSONEq(t, `{"queue":1,"kv":0.5}`, string(sc.Plugins["capacity"]), "the capacity filter drops what Sheddable traffic would be shed at")

	c, err = Load([]string{"--scrape-interval", "20ms"}, env(map[string]string{"PICKER_CONFIG": f, "PICKER_LISTEN": ":7001", "PICKER_SCRAPE_INTERVAL": "30ms"}))
	require.NoError(t, err)
	require.Equal(t, ":7001", c.Listen, "env beats file")
	require.Equal(t, 20*time.Millisecond, c.Scrape.Interval.Duration, "flag beats env")

	c, err = Load([]string{"--endpoints", "10.0.0.9:1, 10.0.0.8:2"}, env(map[string]string{"PICKER_CONFIG": f}))
	require.NoError(t, err)
	require.Equal(t, []string{"10.0.0.9:1", "10.0.0.8:2"}, c.Discovery.Endpoints)
}

func TestKubernetesObjectAPIs(t *testing.T) {
	c, err := Load([]string{"--discovery", "kubernetes", "--namespace", "ns"}, env(nil))
	require.NoError(t, err)
	require.Equal(t, "inference.networking.x-k8s.io/v1alpha2", c.Discovery.ObjectiveAPI)
	require.Equal(t, "inference.networking.x-k8s.io/v1alpha2", c.Discovery.RewriteAPI)
	require.False(t, c.Discovery.ReadOnly, "status conditions are written by default")

	f := filepath.Join(t.TempDir(), "k.yaml")
	require.NoError(t, os.WriteFile(f, []byte("discovery: {mode: kubernetes, namespace: ns, objectiveAPI: llm-d.ai/v1alpha2, rewriteAPI: none, readOnly: true}\n"), 0o600))
	c, err = Load([]string{"--config", f}, env(nil))
	require.NoError(t, err)
	require.Equal(t, "llm-d.ai/v1alpha2", c.Discovery.ObjectiveAPI)
	require.Equal(t, "none", c.Discovery.RewriteAPI)
	require.True(t, c.Discovery.ReadOnly)

	require.NoError(t, os.WriteFile(f, []byte("discovery: {mode: kubernetes, namespace: ns, retryInitial: 100ms, retryMax: 1s}\n"), 0o600))
	c, err = Load([]string{"--config", f}, env(nil))
	require.NoError(t, err)
	require.Equal(t, 100*time.Millisecond, c.Discovery.RetryInitial.Duration)
	require.Equal(t, time.Second, c.Discovery.RetryMax.Duration)
	require.NoError(t, os.WriteFile(f, []byte("discovery: {mode: kubernetes, namespace: ns, retryInitial: 3s, retryMax: 1s}\n"), 0o600))
	_, err = Load([]string{"--config", f}, env(nil))
	require.ErrorContains(t, err, "discovery.retryInitial 3s and retryMax 1s")
}

func TestEngine(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "picker.yaml")
	require.NoError(t, os.WriteFile(f, []byte("discovery: {endpoints: [\"10.0.0.1:1\"]}\nscrape: {engine: triton-trtllm}\n"), 0o600))
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want scrape.Engine
	}{
		{name: "default", args: []string{"--endpoints", "10.0.0.1:1"}, want: scrape.EngineAuto},
		{name: "flag", args: []string{"--endpoints", "10.0.0.1:1", "--engine", "sglang"}, want: scrape.EngineSGLang},
		{name: "env", args: []string{"--endpoints", "10.0.0.1:1"}, env: map[string]string{"PICKER_ENGINE": "vllm"}, want: scrape.EngineVLLM},
		{name: "flag beats env", args: []string{"--endpoints", "10.0.0.1:1", "--engine", "auto"}, env: map[string]string{"PICKER_ENGINE": "sglang"}, want: scrape.EngineAuto},
		{name: "file", args: []string{"--config", f}, want: scrape.EngineTritonTRTLLM},
		{name: "env beats file", args: []string{"--config", f}, env: map[string]string{"PICKER_ENGINE": "sglang"}, want: scrape.EngineSGLang},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, env(tc.env))
			require.NoError(t, err)
			require.Equal(t, tc.want, c.ScrapeEngine())
		})
	}
	require.NoError(t, os.WriteFile(f, []byte("discovery: {endpoints: [\"10.0.0.1:1\"]}\nscrape: {engine: VLLM}\n"), 0o600))
	_, err := Load([]string{"--config", f}, env(nil))
	require.ErrorContains(t, err, `engine "VLLM"`, "names are exact: a typo in the file is an error, not auto")
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "static discovery needs endpoints"},
		{[]string{"--discovery", "magic"}, `discovery mode "magic"`},
		{[]string{"--discovery", "kubernetes"}, "needs a namespace"},
		{[]string{"--endpoints", "10.0.0.1:1", "--strategy", "FAST"}, `strategy: "FAST" is not a routing strategy`},
		{[]string{"--endpoints", "10.0.0.1:1", "--scrape-interval", "-1s"}, "must be positive"},
		{[]string{"--endpoints", "10.0.0.1:1", "extra"}, "unexpected arguments"},
		{[]string{"--endpoints", "10.0.0.1:1", "--engine", "tgi"}, `scrape: engine "tgi": want auto, vllm, sglang, triton-trtllm`},
		{[]string{"--endpoints", "10.0.0.1:1", "--engine", ""}, `scrape: engine ""`},
	} {
		_, err := Load(tc.args, env(nil))
		require.ErrorContains(t, err, tc.want, tc.args)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(f, []byte("listn: x\n"), 0o600))
	_, err := Load([]string{"--config", f}, env(nil))
	require.ErrorContains(t, err, "listn", "unknown keys are errors, not silently ignored")
	require.NoError(t, os.WriteFile(f, []byte("discovery: {endpoints: [\"10.0.0.1:1\"]}\nscheduling: {weights: {DEFAULT: {qeueu: 1}}}\n"), 0o600))
	_, err = Load([]string{"--config", f}, env(nil))
	require.ErrorContains(t, err, `unknown plugin "qeueu"`)
}

func TestExtProc(t *testing.T) {
	c, err := Load([]string{"--endpoints", "10.0.0.1:8000"}, env(nil))
	require.NoError(t, err)
	require.Empty(t, c.ExtProc.Listen, "off by default")
	c, err = Load([]string{"--endpoints", "10.0.0.1:8000", "--ext-proc-listen", ":9004"},
		env(map[string]string{"PICKER_EXT_PROC_BODY_MODE": "buffered", "PICKER_EXT_PROC_LISTEN": ":1"}))
	require.NoError(t, err)
	require.Equal(t, ":9004", c.ExtProc.Listen, "the flag over the environment")
	require.Equal(t, "buffered", c.ExtProc.BodyMode)
	_, err = Load([]string{"--endpoints", "10.0.0.1:8000", "--ext-proc-body-mode", "streamed"}, env(nil))
	require.ErrorContains(t, err, `extProc.bodyMode "streamed"`)

	c, err = Load([]string{"--endpoints", "10.0.0.1:8000", "--ext-proc-cert-path", "/etc/epp"}, env(nil))
	require.NoError(t, err)
	require.Equal(t, "files", c.ExtProc.TLS, "a cert path alone means TLS from its files")
	c, err = Load([]string{"--endpoints", "10.0.0.1:8000"}, env(map[string]string{"PICKER_EXT_PROC_TLS": "self-signed"}))
	require.NoError(t, err)
	require.Equal(t, "self-signed", c.ExtProc.TLS)
	_, err = Load([]string{"--endpoints", "10.0.0.1:8000", "--ext-proc-tls", "files"}, env(nil))
	require.ErrorContains(t, err, "needs extProc.certPath")
	_, err = Load([]string{"--endpoints", "10.0.0.1:8000", "--ext-proc-tls", "mtls"}, env(nil))
	require.ErrorContains(t, err, `extProc.tls "mtls"`)
}

// A profile weighing precise_prefix gets what it needs before it, in order.
func TestPrecisePrefixPrepareOrder(t *testing.T) {
	c := Defaults()
	c.Scheduling.Profiles = map[string]scheduling.ProfileSpec{"PREFIX_CACHE": {Prepare: []string{"precise_prefix", "in_flight"},
		Scorers: []scheduling.WeightedScorer{{Name: "precise_prefix", Weight: 1}}}}
	c.Scheduling.Weights = map[string]map[string]float64{"DEFAULT": {"precise_prefix": 2}}
	sc, err := c.SchedulingConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []pickapi.Strategy{pickapi.StrategyPrefixCache, pickapi.StrategyDefault} {
		if got, want := sc.Profiles[st].Prepare[len(sc.Profiles[st].Prepare)-2:], []string{"prefix", "precise_prefix"}; !slices.Equal(got, want) {
			t.Errorf("%s prepare %v, want it to end %v", st, sc.Profiles[st].Prepare, want)
		}
	}
}
